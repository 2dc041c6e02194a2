"""Pusher that publishes a blessed model as the next version of the model registry (a local directory,
or in the cloud the bucket registry `GCS_ROOT/registry`, written through tf.io.gfile).

The stock filesystem Pusher copies into `base_directory/<timestamp>` in place, so a run killed
mid-copy leaves a half-written model where a server would look. The registry's push stages the copy
and renames it into place under a lock, and records the version's lineage: pipeline run, the MLMD ids
of the Model and ModelBlessing, test and baseline accuracy (from the Evaluator's output) and the
source tables and queries.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any

from tfx.components.pusher import executor as stock
from tfx.components.pusher.component import Pusher
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.channel import Channel
from tfx.types.component_spec import ChannelParameter
from tfx.utils import io_utils

MODEL_EVALUATION_KEY = "model_evaluation"

log = logging.getLogger(__name__)


class RegistryPusherSpec(standard_component_specs.PusherSpec):
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        MODEL_EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
    }


class Executor(stock.Executor):
    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]):
        from mlpipe import contract
        from mlpipe.metadata.payloads import evaluation_accuracy, slice_accuracy
        from mlpipe.registry import PushMetadata, Rollout, open_registry
        from mlpipe.registry.same_model import (
            ALREADY_DEFAULT_PROPERTY,
            ALREADY_VERSION_PROPERTY,
            DIGEST_KEY,
            find_same_model,
            model_digest,
        )

        self._log_startup(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            return
        config = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}")
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        blessing = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_BLESSING_KEY])
        registry = open_registry(config["registry_root"], config["model"])
        with tempfile.TemporaryDirectory(prefix="registry-push-") as tmp:
            staged = os.path.join(tmp, "saved_model")
            # Through tf.io.gfile: in the cloud the Trainer's model is on gs://. The digest is taken of
            # this local copy (model_digest walks a local directory), before the test results are added.
            io_utils.copy_dir(self.GetModelPath(input_dict), staged)
            digest = model_digest(staged)
            same = find_same_model(registry, digest, model.id)
            if same is not None:
                # Blessed against itself (a cached Trainer, the registry's model as baseline): nothing new.
                log.info("model %d is already %s %s; not pushed again", model.id, registry.model, same.name)
                self._MarkNotPushed(pushed)
                pushed.set_string_custom_property(ALREADY_VERSION_PROPERTY, same.name)
                pushed.set_int_custom_property(ALREADY_DEFAULT_PROPERTY, int(same.is_default))
                return
            accuracy: dict[str, float] = {}
            extra = {**config.get("extra", {}), "model_uri": model.uri, DIGEST_KEY: digest}
            if input_dict.get(MODEL_EVALUATION_KEY):
                evaluation = artifact_utils.get_single_instance(input_dict[MODEL_EVALUATION_KEY])
                accuracy = evaluation_accuracy(evaluation.uri)
                by_source = slice_accuracy(evaluation.uri, contract.SOURCE_KEY)
                if by_source:  # learning from feedback: the MNIST test rows are the test accuracy
                    accuracy = by_source.get(str(contract.SOURCE_MNIST), accuracy)
                    extra["feedback_test_accuracy"] = by_source.get(str(contract.SOURCE_FEEDBACK), {})
                _attach_test_results(staged, evaluation.uri)
            metadata = PushMetadata(
                # None in a Vertex AI container (kubeflow_v2_run_executor's Context has no run id).
                pipeline_run_id=(self._context.pipeline_run_id if self._context else "") or "",
                model_artifact_id=model.id,
                blessing_artifact_id=blessing.id,
                test_accuracy=accuracy.get("candidate"),
                baseline_accuracy=accuracy.get("baseline"),
                source_tables=tuple(config.get("source_tables", ())),
                source_queries=config.get("source_queries", {}),
                extra=extra,
            )
            rollout = config.get("challenger")
            version = registry.push(
                staged, metadata, promote=config.get("promote", True),
                challenger=Rollout("", rollout["share"], rollout["mode"]) if rollout else None,
                actor=f"pipeline run {metadata.pipeline_run_id}",
            )
        self._MarkPushed(pushed, pushed_destination=version.saved_model_uri, pushed_version=version.name)


def _attach_test_results(saved_model_dir: str, evaluation_uri: str) -> None:
    """Add the test split's confusion matrix (from TFMA) to the search report the Trainer left in
    the SavedModel's assets.extra, so the version carries its report and plots."""
    import numpy as np

    from mlpipe.contract import SEARCH_REPORT_DIR, SEARCH_REPORT_FILE
    from mlpipe.metadata.payloads import test_confusion_matrix
    from models import search_report

    report_dir = os.path.join(saved_model_dir, SEARCH_REPORT_DIR)
    report_path = os.path.join(report_dir, SEARCH_REPORT_FILE)
    counts = test_confusion_matrix(evaluation_uri)
    if counts is None or not os.path.exists(report_path):
        return
    with open(report_path) as f:
        report = json.load(f)
    # The matrix as (true, predicted) pairs: exactly the test predictions, up to order.
    y_true = np.repeat(np.repeat(np.arange(counts.shape[0]), counts.shape[1]), counts.reshape(-1))
    y_pred = np.repeat(np.tile(np.arange(counts.shape[1]), counts.shape[0]), counts.reshape(-1))
    search_report.write_report(report, report_dir, y_true.tolist(), y_pred.tolist())


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
