"""The baseline is the model behind the registry's default version: locally a Resolver strategy, in
the cloud a step of its own (see "in the cloud" below).

After a rollback (`mlpipe models set-default v1`) new models must be compared with what users
actually get, not with the latest blessed model. The registry records each version's MLMD Model
artifact id; this strategy picks that artifact (and its blessing) from MLMD. With an empty registry,
or a default whose artifact is not in this MLMD store, it falls back to the latest blessed model.
"""

from __future__ import annotations

import logging

from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.evaluator.component import Evaluator
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.channel import Channel
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import io_utils, path_utils

log = logging.getLogger(__name__)

# Custom property of RegistryBaseline's output: the registry version it holds ("" = no baseline).
REGISTRY_VERSION_PROPERTY = "registry_version"


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


# ---- in the cloud ---------------------------------------------------------------------------------
# KubeflowV2DagRunner compiles a Resolver only for LatestArtifactStrategy and LatestBlessedModelStrategy
# (tfx/orchestration/kubeflow/v2/step_builder.py: fixed Vertex ML Metadata filters that name no
# pipeline); a strategy with our code cannot run there. So in the cloud the baseline is a small step
# of its own in the project's image: it copies the SavedModel behind the bucket registry's default
# into its output Model artifact, and the Evaluator below ignores that artifact when it is empty.

def scoped_default(registry, pipeline_name: str):
    """The registry's default version if this pipeline pushed it (its `extra.pipeline_name`), else None."""
    from mlpipe.errors import MlpipeError

    try:
        info = registry.resolve()
    except MlpipeError:
        return None
    if info.metadata.extra.get("pipeline_name") != pipeline_name:
        log.warning("registry default %s/%s was not pushed by pipeline %s; no baseline",
                    info.model, info.name, pipeline_name)
        return None
    return info


class RegistryBaselineSpec(ComponentSpec):
    PARAMETERS = {
        "registry_root": ExecutionParameter(type=str),
        "model_name": ExecutionParameter(type=str),
        "pipeline_name": ExecutionParameter(type=str),
    }
    INPUTS: dict = {}
    OUTPUTS = {"model": ChannelParameter(type=standard_artifacts.Model)}


class RegistryBaselineExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        from mlpipe.registry import open_registry

        out = artifact_utils.get_single_instance(output_dict["model"])
        registry = open_registry(exec_properties["registry_root"], exec_properties["model_name"])
        info = scoped_default(registry, exec_properties["pipeline_name"])
        out.set_string_custom_property(REGISTRY_VERSION_PROPERTY, info.name if info else "")
        if info is None:
            log.info("baseline: none (empty registry or a default from elsewhere)")
            return
        io_utils.copy_dir(info.saved_model_uri, path_utils.serving_model_dir(out.uri))
        log.info("baseline: registry default %s/%s", info.model, info.name)


class RegistryBaseline(base_component.BaseComponent):
    """The model behind the registry's default version, scoped to this pipeline (empty if none)."""

    SPEC_CLASS = RegistryBaselineSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(RegistryBaselineExecutor)

    def __init__(self, registry_root: str, model: str, pipeline_name: str):
        super().__init__(spec=RegistryBaselineSpec(
            registry_root=registry_root, model_name=model, pipeline_name=pipeline_name,
            model=Channel(type=standard_artifacts.Model)))


class BaselineAwareEvaluatorExecutor(evaluator_executor.Executor):
    """TFX's Evaluator, ignoring a baseline Model artifact without a SavedModel (RegistryBaseline's
    output when there is no baseline): then the model is blessed on the accuracy floor alone."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        key = standard_component_specs.BASELINE_MODEL_KEY
        if input_dict.get(key):
            kept = [m for m in input_dict[key] if fileio.exists(path_utils.serving_model_dir(m.uri))]
            input_dict = {**input_dict, key: kept}
        super().Do(input_dict, output_dict, exec_properties)


class BaselineAwareEvaluator(Evaluator):
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(BaselineAwareEvaluatorExecutor)
