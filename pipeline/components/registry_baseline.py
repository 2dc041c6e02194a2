"""Resolver strategy: the baseline is the model behind the registry's default version.

After a rollback (`mlpipe models set-default v1`) new models must be compared with what users
actually get, not with the latest blessed model. The registry records each version's MLMD Model
artifact id; this strategy picks that artifact (and its blessing) from MLMD. With an empty registry,
or a default whose artifact is not in this MLMD store, it falls back to the latest blessed model.
"""

from __future__ import annotations

import logging

from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy

log = logging.getLogger(__name__)


class RegistryDefaultStrategy(LatestBlessedModelStrategy):
    def __init__(self, registry_root: str, model: str):
        self._registry_root = registry_root
        self._model = model

    def _default_model_artifact_id(self) -> int | None:
        from mlpipe.errors import MlpipeError
        from mlpipe.registry import open_registry

        try:
            registry = open_registry(self._registry_root, self._model)
            return registry.resolve().metadata.model_artifact_id
        except MlpipeError:
            return None

    def _resolve(self, input_dict, model_channel_key, model_blessing_channel_key):
        wanted = self._default_model_artifact_id()
        if wanted is not None:
            models = [m for m in input_dict[model_channel_key] if m.id == wanted]
            blessings = [
                b for b in input_dict[model_blessing_channel_key]
                if b.get_int_custom_property("current_model_id") == wanted
            ]
            if models:
                log.info("baseline: registry default version (Model artifact %d)", wanted)
                return {model_channel_key: models, model_blessing_channel_key: blessings[-1:]}
            log.warning("registry default's Model artifact %d is not in this MLMD store; "
                        "using the latest blessed model", wanted)
        return super()._resolve(input_dict, model_channel_key, model_blessing_channel_key)
