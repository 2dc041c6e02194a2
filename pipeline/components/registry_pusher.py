"""Pusher that publishes a blessed model as the next version of the model registry.

The stock filesystem Pusher copies into `base_directory/<timestamp>` in place, so a run killed
mid-copy leaves a half-written model where a server would look. The registry's push stages the copy
and renames it into place under a lock, and records the version's lineage: pipeline run, the MLMD ids
of the Model and ModelBlessing, test and baseline accuracy (from the Evaluator's output) and the
source tables and queries.
"""

from __future__ import annotations

import json
from typing import Any

from tfx.components.pusher import executor as stock
from tfx.components.pusher.component import Pusher
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.channel import Channel
from tfx.types.component_spec import ChannelParameter

MODEL_EVALUATION_KEY = "model_evaluation"


class RegistryPusherSpec(standard_component_specs.PusherSpec):
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        MODEL_EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
    }


class Executor(stock.Executor):
    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]):
        from mlpipe.registry import PushMetadata, Registry
        from mlpipe.run_summary import evaluation_accuracy

        self._log_startup(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            return
        config = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}")
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        blessing = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_BLESSING_KEY])
        accuracy: dict[str, float] = {}
        if input_dict.get(MODEL_EVALUATION_KEY):
            evaluation = artifact_utils.get_single_instance(input_dict[MODEL_EVALUATION_KEY])
            accuracy = evaluation_accuracy(evaluation.uri)
        metadata = PushMetadata(
            pipeline_run_id=self._context.pipeline_run_id if self._context else "",
            model_artifact_id=model.id,
            blessing_artifact_id=blessing.id,
            test_accuracy=accuracy.get("candidate"),
            baseline_accuracy=accuracy.get("baseline"),
            source_tables=tuple(config.get("source_tables", ())),
            source_queries=config.get("source_queries", {}),
            extra=config.get("extra", {}),
        )
        registry = Registry(config["registry_root"], model=config.get("model", "mnist"))
        version = registry.push(self.GetModelPath(input_dict), metadata, promote=config.get("promote", True))
        self._MarkPushed(pushed, pushed_destination=str(version.saved_model_dir), pushed_version=version.name)


class RegistryPusher(Pusher):
    """Pusher to the local model registry (`mlpipe models ...`)."""

    SPEC_CLASS = RegistryPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model, model_blessing, model_evaluation, custom_config: dict[str, Any]):
        spec = RegistryPusherSpec(
            model=model,
            model_blessing=model_blessing,
            model_evaluation=model_evaluation,
            custom_config=json.dumps(custom_config, sort_keys=True),
            pushed_model=Channel(type=standard_artifacts.PushedModel),
        )
        base_component.BaseComponent.__init__(self, spec=spec)
