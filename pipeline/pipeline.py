"""`create_pipeline`: the whole TFX pipeline, in data order. Both runners call this.

Where local and cloud differ (where the examples come from, what the baseline is, where a blessed model
goes) the choice is a small named builder below `create_pipeline`, so the function itself reads as the
data flow.
"""

from __future__ import annotations

import os

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from mlpipe import contract
from pipeline import queries
from pipeline.cloud_config import AI_PLATFORM_RUNTIME_VERSION, CloudConfig
from pipeline.components import (
    local_bigquery_example_gen,
    registry_baseline,
    registry_pusher,
    validation_gate,
)
from pipeline.configs import PipelineConfig

SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "schema", "schema.pbtxt")
PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.model.run_fn"


def create_pipeline(cfg: PipelineConfig, metadata_connection_config=None) -> tfx.dsl.Pipeline:
    # Examples from BigQuery: train ← mnist.train, eval ← mnist.valid, test ← mnist.test.
    example_gen = _example_gen(cfg)

    # Statistics of every split, checked against the curated schema in the repo.
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=_schema_file(cfg))
    # Stops the pipeline on any anomaly (pixel > 255, 783 pixels, label 11, ...).
    example_validator = validation_gate.GatedExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    ).with_id("ExampleValidator")

    # Pixels → [0, 1]; the graph is exported inside the model so clients send raw pixels.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=["train", "eval"]),
    )
    transform.add_upstream_node(example_validator)

    # AdaNet AutoML search; candidates selected on the eval split.
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=cfg.training.train_steps),
        eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=cfg.training.eval_steps),
        custom_config={"training": cfg.training.to_custom_config()},
    )

    # The model to beat (none on the first run, when the floor alone decides).
    baseline_resolver = _baseline_resolver(cfg)

    # Test-split evaluation; blesses only above the floor and not worse than the baseline.
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline_resolver.outputs["model"],
        eval_config=eval_config(cfg),
        example_splits=["test"],
    )

    # Blessed models only.
    pusher = _pusher(cfg, trainer, evaluator)

    return tfx.dsl.Pipeline(
        pipeline_name=cfg.pipeline_name,
        pipeline_root=_pipeline_root(cfg),
        components=[example_gen, statistics_gen, schema_gen, example_validator, transform, trainer,
                    baseline_resolver, evaluator, pusher],
        enable_cache=cfg.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(cfg.beam_args),
    )


def eval_config(cfg: PipelineConfig) -> tfma.EvalConfig:
    """Accuracy ≥ floor AND no regression against the baseline; per-class slices and a confusion matrix.

    With feedback in the data, the MNIST rows of the test split stay the main gate (floor and no
    regression) and the feedback rows must not regress either; both are slices on `source`."""
    no_regression = tfma.GenericChangeThreshold(
        direction=tfma.MetricDirection.HIGHER_IS_BETTER,
        absolute={"value": -cfg.regression_tolerance},
    )
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": cfg.accuracy_floor}),
        change_threshold=no_regression,
    )
    slicing_specs = [tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[contract.LABEL_KEY])]
    gates = [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=accuracy_threshold)]
    if cfg.reads_feedback:
        slicing_specs.append(tfma.SlicingSpec(feature_keys=[contract.SOURCE_KEY]))
        mnist = tfma.SlicingSpec(feature_values={contract.SOURCE_KEY: str(contract.SOURCE_MNIST)})
        gates = [tfma.PerSliceMetricThreshold(slicing_specs=[mnist], threshold=accuracy_threshold)]
        if cfg.gates_on_feedback:
            feedback = tfma.SlicingSpec(feature_values={contract.SOURCE_KEY: str(contract.SOURCE_FEEDBACK)})
            gates.append(tfma.PerSliceMetricThreshold(
                slicing_specs=[feedback], threshold=tfma.MetricThreshold(change_threshold=no_regression)))
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=contract.EXAMPLES_SIGNATURE,
                label_key=contract.LABEL_KEY,
                prediction_key=contract.PROBABILITIES_KEY,
            )
        ],
        slicing_specs=slicing_specs,
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    # Thresholds on the gating slices only: per-class accuracies are reported, not gated.
                    tfma.MetricConfig(class_name="SparseCategoricalAccuracy", per_slice_thresholds=gates),
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                ]
            )
        ],
    )


def example_gen_input_config(cfg: PipelineConfig) -> example_gen_pb2.Input:
    return example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name=q.split, pattern=q.sql) for q in _split_queries(cfg)]
    )


# ---- where local and cloud differ -----------------------------------------------------------------

def _example_gen(cfg: PipelineConfig):
    """Locally the same queries through an executor that reaches the emulator (STACK.md: Beam's
    ReadFromBigQuery cannot); in the cloud the stock BigQueryExampleGen."""
    output_config = example_gen_pb2.Output()  # empty: keep the input splits as they are
    if cfg.orchestration == "local":
        return local_bigquery_example_gen.LocalBigQueryExampleGen(
            input_config=example_gen_input_config(cfg),
            output_config=output_config,
            bq_project=cfg.settings.project,
            bq_host=cfg.settings.bq_host,
            bq_port=cfg.settings.bq_port,
            bq_grpc_port=cfg.settings.bq_grpc_port,
            source_fingerprint=cfg.source_fingerprint,
        )
    return tfx.extensions.google_cloud_big_query.BigQueryExampleGen(
        input_config=example_gen_input_config(cfg), output_config=output_config
    )


def _baseline_resolver(cfg: PipelineConfig) -> tfx.dsl.Resolver:
    """Locally the model behind the registry's default version (what users get); in the cloud the
    latest blessed model."""
    channels = {
        "model": tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        "model_blessing": tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    }
    if cfg.orchestration == "local":
        resolver = tfx.dsl.Resolver(
            strategy_class=registry_baseline.RegistryDefaultStrategy,
            config={"registry_root": cfg.settings.registry_location, "model": cfg.model_name},
            **channels,
        )
    else:
        resolver = tfx.dsl.Resolver(strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy, **channels)
    return resolver.with_id("baseline_resolver")


def _pusher(cfg: PipelineConfig, trainer, evaluator):
    """Locally the next registry version (atomic, with lineage metadata); in the cloud AI Platform /
    Vertex AI."""
    if cfg.orchestration == "local":
        split_queries = _split_queries(cfg)
        return registry_pusher.RegistryPusher(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            model_evaluation=evaluator.outputs["evaluation"],
            custom_config={
                "registry_root": cfg.settings.registry_location,
                "model": cfg.model_name,
                "promote": cfg.promote,
                "challenger": None if cfg.challenger_share is None else
                {"share": cfg.challenger_share, "mode": cfg.challenger_mode},
                "source_tables": sorted({t for q in split_queries for t in q.tables}),
                "source_queries": {q.split: q.sql for q in split_queries},
                "extra": {"profile": cfg.profile, "training": cfg.training.to_custom_config(),
                          **({"feedback_rows": cfg.feedback_rows, "feedback_window": cfg.feedback_window}
                             if cfg.reads_feedback else {})},
            },
        ).with_id("Pusher")
    return tfx.extensions.google_cloud_ai_platform.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        custom_config=cloud_push_config(cfg.cloud),
    ).with_id("Pusher")


def cloud_push_config(cloud: CloudConfig) -> dict:
    """`custom_config` of the AI Platform Pusher for the configured push target."""
    from tfx.extensions.google_cloud_ai_platform import constants

    if cloud.push_target == "vertex":
        return {
            constants.ENABLE_VERTEX_KEY: True,
            constants.VERTEX_REGION_KEY: cloud.region,
            constants.VERTEX_CONTAINER_IMAGE_URI_KEY: cloud.vertex_serving_image,
            constants.SERVING_ARGS_KEY: {
                "project_id": cloud.project,
                "endpoint_name": cloud.model_name,
                "machine_type": "n1-standard-2",
                "min_replica_count": 1,
                "max_replica_count": 1,
            },
        }
    return {
        constants.SERVING_ARGS_KEY: {
            "model_name": cloud.model_name,
            "project_id": cloud.project,
            "regions": [cloud.region],
            "runtime_version": AI_PLATFORM_RUNTIME_VERSION,
        },
    }


def _schema_file(cfg: PipelineConfig) -> str:
    # In the cloud the steps read the schema inside the project's image, not on this machine.
    return SCHEMA_FILE if cfg.orchestration == "local" else cfg.cloud.schema_file


def _pipeline_root(cfg: PipelineConfig) -> str:
    if cfg.orchestration == "local":
        return str(cfg.pipeline_root.resolve())
    return cfg.cloud.pipeline_root(cfg.pipeline_name)


def _split_queries(cfg: PipelineConfig) -> list[queries.SplitQuery]:
    return queries.split_queries(cfg.settings.project, cfg.settings.dataset, cfg.row_limits,
                                 feedback=cfg.reads_feedback)
