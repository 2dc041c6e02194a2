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
from pipeline.cloud_config import ENDPOINT_MACHINE_TYPE, CloudConfig
from pipeline.code_fingerprint import code_fingerprint, function_module
from pipeline.components import (
    cloud_example_gen,
    local_bigquery_example_gen,
    registry_baseline,
    registry_pusher,
    validation_gate,
    vertex_pusher,
)
from pipeline.configs import PipelineConfig

SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "schema", "schema.pbtxt")
PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.model.run_fn"
# Under a component's custom_config: the fingerprint of the project code it runs (cache key).
CODE_KEY = "code"


def create_pipeline(cfg: PipelineConfig, metadata_connection_config=None) -> tfx.dsl.Pipeline:
    # Examples from BigQuery: train ← mnist.train, eval ← mnist.valid, test ← mnist.test.
    example_gen = _example_gen(cfg)

    # Statistics of every split, checked against the curated schema in the repo.
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=_schema_file(cfg))
    # Stops the pipeline on any anomaly (pixel > 255, 783 pixels, label 11, ...).
    example_validator = validation_gate.GatedExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"],
        code_fingerprint=code_fingerprint(validation_gate.__name__),
    ).with_id("ExampleValidator")

    # Pixels → [0, 1]; the graph is exported inside the model so clients send raw pixels.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=["train", "eval"]),
        # The code TFX cannot fingerprint by itself (an import path, not a module_file): an edit re-runs.
        custom_config={CODE_KEY: code_fingerprint(function_module(PREPROCESSING_FN))},
    )
    transform.add_upstream_node(example_validator)

    # The model to beat (none on the first run, when the floor alone decides): the registry's default.
    baseline_resolver = _baseline_resolver(cfg)

    # AdaNet AutoML search; candidates selected on the eval split. A warm start continues the
    # baseline's search for one more iteration (models/warm_start.py).
    warm = {"base_model": baseline_resolver.outputs["model"]} if cfg.warm_start else {}
    trainer = _trainer_class(cfg)(
        **warm,
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=cfg.training.train_steps),
        eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=cfg.training.eval_steps),
        custom_config={"training": cfg.training.to_custom_config(),
                       CODE_KEY: code_fingerprint(function_module(RUN_FN)), **cloud_training_config(cfg.cloud)},
    )

    # Test-split evaluation; blesses only above the floor and not worse than the baseline.
    evaluator = _evaluator_class(cfg)(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline_resolver.outputs["model"],
        eval_config=eval_config(cfg),
        example_splits=["test"],
    ).with_id("Evaluator")

    # Blessed models only: the next registry version (locally and in the bucket), then in the cloud
    # also a Vertex AI endpoint.
    pushers = _pushers(cfg, trainer, evaluator)

    return tfx.dsl.Pipeline(
        pipeline_name=cfg.pipeline_name,
        pipeline_root=_pipeline_root(cfg),
        components=[example_gen, statistics_gen, schema_gen, example_validator, transform, trainer,
                    baseline_resolver, evaluator, *pushers],
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
            code_fingerprint=code_fingerprint(local_bigquery_example_gen.__name__),
        )
    # The stock executor; its data fingerprint is a run-time parameter set at submit time.
    return cloud_example_gen.CloudBigQueryExampleGen(
        input_config=example_gen_input_config(cfg), output_config=output_config,
        source_fingerprint=cloud_example_gen.fingerprint_parameter(),
    ).with_id("BigQueryExampleGen")


def _baseline_resolver(cfg: PipelineConfig) -> tfx.dsl.Resolver:
    """The model behind the registry's default version (what users get): locally a Resolver over the
    local MLMD store; in the cloud a step that copies it from the bucket registry, scoped to this
    pipeline (Vertex cannot run a custom resolver strategy: registry_baseline.py)."""
    if cfg.cloud is not None:
        return registry_baseline.RegistryBaseline(
            cfg.cloud.registry_root, cfg.model_name, cfg.pipeline_name).with_id("baseline_resolver")
    channels = {
        "model": tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        "model_blessing": tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    }
    resolver = tfx.dsl.Resolver(
        strategy_class=registry_baseline.RegistryDefaultStrategy,
        config={"registry_root": cfg.settings.registry_location, "model": cfg.model_name},
        **channels,
    )
    return resolver.with_id("baseline_resolver")


def _evaluator_class(cfg: PipelineConfig):
    """In the cloud the baseline step may hand over an empty Model (no default yet): an Evaluator
    that ignores it then."""
    return tfx.components.Evaluator if cfg.cloud is None else registry_baseline.BaselineAwareEvaluator


def _pushers(cfg: PipelineConfig, trainer, evaluator) -> list:
    """The next registry version (atomic, with lineage metadata): locally in the local registry, in
    the cloud in the bucket registry the Cloud Function serves; then, with push target `vertex`, a
    Vertex AI endpoint (after the registry push, so the registry always knows what is deployed)."""
    split_queries = _split_queries(cfg)
    registry_root = cfg.settings.registry_location if cfg.cloud is None else cfg.cloud.registry_root
    registry = registry_pusher.RegistryPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        model_evaluation=evaluator.outputs["evaluation"],
        custom_config={
            "registry_root": registry_root,
            "model": cfg.model_name,
            "promote": cfg.promote,
            "challenger": None if cfg.challenger_share is None else
            {"share": cfg.challenger_share, "mode": cfg.challenger_mode},
            "source_tables": list(dict.fromkeys(t for q in split_queries for t in q.tables)),
            "source_queries": {q.split: q.sql for q in split_queries},
            "extra": {"profile": cfg.profile, "pipeline_name": cfg.pipeline_name,
                      "orchestration": cfg.orchestration, "training": cfg.training.to_custom_config(),
                      **({"feedback_rows": cfg.feedback_rows, "feedback_window": cfg.feedback_window}
                         if cfg.reads_feedback else {})},
            CODE_KEY: code_fingerprint(registry_pusher.__name__),
        },
    ).with_id("Pusher")
    if cfg.cloud is None or cfg.cloud.push_target != "vertex":
        return [registry]
    endpoint = vertex_pusher.VertexPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        custom_config=cloud_push_config(cfg.cloud),
    ).with_id("VertexPusher")
    endpoint.add_upstream_node(registry)
    return [registry, endpoint]


def cloud_push_config(cloud: CloudConfig) -> dict:
    """`custom_config` of TFX's AI Platform Pusher in its Vertex AI mode: upload to the Vertex Model
    Registry, deploy to the endpoint `model_name` with all traffic; our executor then undeploys all but
    `vertex_keep_previous` older models (pipeline/components/vertex_pusher.py)."""
    from tfx.extensions.google_cloud_ai_platform import constants

    return {
        constants.ENABLE_VERTEX_KEY: True,
        constants.VERTEX_REGION_KEY: cloud.region,
        constants.VERTEX_CONTAINER_IMAGE_URI_KEY: cloud.vertex_serving_image,
        constants.SERVING_ARGS_KEY: {
            "project_id": cloud.project,
            "endpoint_name": cloud.model_name,
            "machine_type": ENDPOINT_MACHINE_TYPE,
            "min_replica_count": 1,
            "max_replica_count": 1,
            "traffic_percentage": 100,
        },
        vertex_pusher.KEEP_PREVIOUS_KEY: cloud.vertex_keep_previous,
    }


def _trainer_class(cfg: PipelineConfig):
    """In the pipeline step's container, or (a trainer machine type is set) as a Vertex AI Training job."""
    if cfg.cloud is not None and cfg.cloud.trainer_machine_type:
        return tfx.extensions.google_cloud_ai_platform.Trainer
    return tfx.components.Trainer


def cloud_training_config(cloud: CloudConfig | None) -> dict:
    """The Vertex AI Training custom job of TFX's AI Platform Trainer (Vertex mode): one worker of the
    configured machine type running the project's image. Empty unless a trainer machine type is set."""
    if cloud is None or not cloud.trainer_machine_type:
        return {}
    from tfx.extensions.google_cloud_ai_platform import constants
    from tfx.extensions.google_cloud_ai_platform.trainer import executor as trainer_executor

    job_spec: dict = {
        "worker_pool_specs": [{
            "machine_spec": {"machine_type": cloud.trainer_machine_type},
            "replica_count": 1,
            "container_spec": {"image_uri": cloud.image},
        }],
    }
    if cloud.service_account:
        job_spec["service_account"] = cloud.service_account
    return {
        constants.ENABLE_VERTEX_KEY: True,
        constants.VERTEX_REGION_KEY: cloud.region,
        trainer_executor.TRAINING_ARGS_KEY: {"project": cloud.project, "job_spec": job_spec},
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
