"""The cloud ExampleGen: TFX's stock BigQueryExampleGen executor, plus a `source_fingerprint`
execution property that is a run-time parameter of the compiled pipeline.

Vertex AI Pipelines reuses a cached step while its inputs and parameters are unchanged, and the
queries' text never changes: a reloaded table would not be re-read. `mlpipe compile-vertex --submit`
computes the content fingerprint of each split's rows (mlpipe/bigquery/fingerprint.py, by one query
per table in BigQuery) and passes it as the parameter's value, so new data is a new cache key, as
locally. The executor ignores the property (it only keys the cache).
"""

from __future__ import annotations

from tfx.components.example_gen.component import QueryBasedExampleGen
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.extensions.google_cloud_big_query.example_gen import executor as bigquery_executor
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.channel import Channel
from tfx.types.component_spec import ExecutionParameter

SOURCE_FINGERPRINT = "source_fingerprint"  # also the name of the pipeline's run-time parameter


def fingerprint_parameter() -> data_types.RuntimeParameter:
    """The run-time parameter; empty by default (a run submitted without a fingerprint)."""
    return data_types.RuntimeParameter(name=SOURCE_FINGERPRINT, ptype=str, default="")


class CloudBigQueryExampleGenSpec(standard_component_specs.QueryBasedExampleGenSpec):
    PARAMETERS = {
        **standard_component_specs.QueryBasedExampleGenSpec.PARAMETERS,
        SOURCE_FINGERPRINT: ExecutionParameter(type=str, optional=True),
    }


class CloudBigQueryExampleGen(QueryBasedExampleGen):
    SPEC_CLASS = CloudBigQueryExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(bigquery_executor.Executor)

    def __init__(self, input_config: example_gen_pb2.Input, output_config: example_gen_pb2.Output,
                 source_fingerprint: str | data_types.RuntimeParameter):
        spec = CloudBigQueryExampleGenSpec(
            input_config=input_config,
            output_config=output_config,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            source_fingerprint=source_fingerprint,
            examples=Channel(type=standard_artifacts.Examples),
        )
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
