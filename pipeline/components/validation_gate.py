"""ExampleValidator that halts the pipeline when it finds anomalies.

The stock executor only records anomalies (and a `blessed` property per split); nothing downstream
reads it, so corrupt rows would reach training. This executor runs the stock one, then raises with a
one-line description of each anomaly, which stops the pipeline before Transform.
"""

from __future__ import annotations

import os
from typing import Any

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.example_validator import executor as stock
from tfx.components.example_validator.component import ExampleValidator
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.channel import Channel
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import io_utils, json_utils

CODE_FINGERPRINT = "code_fingerprint"


class AnomaliesFound(RuntimeError):
    """Data failed validation against the curated schema."""


def describe_anomalies(anomalies: anomalies_pb2.Anomalies, split: str) -> list[str]:
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        reason = info.description or info.short_description or "anomaly"
        lines.append(f"split '{split}', feature '{feature}': {reason}")
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        lines.append(f"split '{split}', dataset: {info.description or info.short_description}")
    return lines


class Executor(stock.Executor):
    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]):
        super().Do(input_dict, output_dict, exec_properties)
        anomalies_artifact = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.ANOMALIES_KEY]
        )
        problems = []
        for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
            path = os.path.join(
                artifact_utils.get_split_uri([anomalies_artifact], split), "SchemaDiff.pb"
            )
            anomalies = anomalies_pb2.Anomalies()
            anomalies.ParseFromString(io_utils.read_bytes_file(path))
            problems += describe_anomalies(anomalies, split)
        if problems:
            raise AnomaliesFound("data anomalies found: " + "; ".join(problems))


class GatedExampleValidatorSpec(standard_component_specs.ExampleValidatorSpec):
    PARAMETERS = {
        **standard_component_specs.ExampleValidatorSpec.PARAMETERS,
        # This executor's source (pipeline/code_fingerprint.py): an edit re-runs the validation.
        CODE_FINGERPRINT: ExecutionParameter(type=str, optional=True),
    }


class GatedExampleValidator(ExampleValidator):
    """The stock component with the halting executor."""

    SPEC_CLASS = GatedExampleValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, statistics, schema, code_fingerprint: str = ""):
        spec = GatedExampleValidatorSpec(
            statistics=statistics,
            schema=schema,
            exclude_splits=json_utils.dumps([]),
            code_fingerprint=code_fingerprint,
            anomalies=Channel(type=standard_artifacts.ExampleAnomalies),
        )
        base_component.BaseComponent.__init__(self, spec=spec)
