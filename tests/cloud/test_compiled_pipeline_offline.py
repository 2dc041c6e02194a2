"""The compiled Vertex AI pipeline, run offline: `mlpipe compile-vertex --profile quick` (the default
push target), then EVERY task of the compiled DAG in topological order, each through its own container
command (`kubeflow_v2_run_executor` with the ExecutorInput Vertex would pass, wired from the upstream
ExecutorOutputs: tests/cloud/run_compiled_task.py), on the emulator's slice of real MNIST, with a
local directory standing in for the gs:// bucket (the registry read through its `file://` URL, the
code path that serves gs://). Then the Cloud Function bundle serves what the pipeline blessed.

What differs from a run in Vertex AI, and why:
- BigQueryExampleGen runs its compiled ExecutorInput (same queries, same splits) through the same
  entry point, but with the local executor class (pipeline/components/local_bigquery_example_gen.py)
  and the emulator's endpoint as extra parameters: the stock executor's Beam `ReadFromBigQuery` has no
  endpoint override and needs a GCS temp location (STACK.md), so it cannot reach an emulator.
- Beam runs in-process (the local pipeline's beam args) instead of the compiled DataflowRunner args.
- The image's /mlpipe is this checkout (the schema file parameter), gs://BUCKET/PREFIX a directory.
- VertexPusher is not run: it calls the Vertex AI API (model upload, endpoint deploy), which only a
  real project verifies; nothing consumes its output, and its undeploy choice is unit-tested
  (test_vertex_pusher.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tfx.orchestration.kubeflow.v2.container.kubeflow_v2_entrypoint_utils import _get_hashed_id

from mlpipe.bigquery.client import query_arrow
from mlpipe.bigquery.read import arrow_to_numpy
from mlpipe.config import load_settings
from mlpipe.metadata.payloads import evaluation_accuracy
from mlpipe.registry import open_registry
from pipeline.cloud_config import IMAGE_SCHEMA_FILE
from pipeline.configs import PipelineConfig
from pipeline.local_run import source_fingerprint
from pipeline.pipeline import SCHEMA_FILE
from tests.cloud import offline_compile as oc
from tests.cloud.bundle_server import start_bundle_server, wait_ready
from tests.cloud.run_compiled_task import container, dependencies, run_pipeline
from tests.e2e.conftest import QUICK_ROWS

pytestmark = pytest.mark.e2e

DATASET = "mnist_vertex"
PIPELINE = "mnist-automl"
LOCAL_EXAMPLE_GEN = "pipeline.components.local_bigquery_example_gen.Executor"
NOT_RUN = ("VertexPusher",)


@pytest.fixture(scope="module")
def vertex_data(bq_settings):
    """The quick slice of real MNIST in the compiled project's dataset on the session's emulator."""
    from mlpipe.bigquery.load import load_mnist_tables

    settings = bq_settings.replace(project=oc.PROJECT, dataset=DATASET)
    load_mnist_tables(settings, limit=QUICK_ROWS)
    return settings


@pytest.fixture(scope="module")
def compiled_job(tmp_path_factory, vertex_data) -> dict:
    out = tmp_path_factory.mktemp("compiled") / "pipeline.json"
    result = oc.run_cli(["compile-vertex", *oc.COMMON, "--profile", "quick", "--dataset", DATASET,
                         "--output", str(out)])
    assert result["rc"] == 0, result["stderr"][-3000:]
    return json.loads(out.read_text())


def local_bucket(job: dict, bucket: Path) -> dict:
    """The compiled job with gs://BUCKET/PREFIX → the local bucket's file:// URL and the image's schema
    path → this checkout's (both plain string substitutions: nothing else of the job changes)."""
    text = json.dumps(job)
    assert oc.GCS_ROOT in text and IMAGE_SCHEMA_FILE in text
    text = text.replace(oc.GCS_ROOT, bucket.as_uri()).replace(IMAGE_SCHEMA_FILE, SCHEMA_FILE)
    assert "gs://" not in text
    return json.loads(text)


@pytest.fixture(scope="module")
def pipeline_run(compiled_job, vertex_data, tmp_path_factory):
    bucket = tmp_path_factory.mktemp("bucket")
    job = local_bucket(compiled_job, bucket)
    # Where Vertex puts a run's task outputs: {gcsOutputDirectory}/{project number}/{job id}/….
    root = Path(job["runtimeConfig"]["gcsOutputDirectory"].removeprefix("file://")) / "123" / "offline-run"
    cfg = PipelineConfig.for_profile(vertex_data, "quick")
    # What `compile-vertex --submit` computes and passes as the run-time parameter (here on the emulator).
    parameters = {"source_fingerprint": source_fingerprint(cfg)}
    example_gen_endpoint = {"bq_project": vertex_data.project, "bq_host": vertex_data.bq_host,
                            "bq_port": vertex_data.bq_port, "bq_grpc_port": vertex_data.bq_grpc_port}
    run = run_pipeline(
        job, root, parameters, beam_args=list(cfg.beam_args),
        overrides={"BigQueryExampleGen": {"executor_class": LOCAL_EXAMPLE_GEN, "parameters": example_gen_endpoint}},
        skip=NOT_RUN, env={"TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    return job, run, f"{bucket.as_uri()}/registry"


def test_every_compiled_task_ran_through_its_container_command(pipeline_run, compiled_job):
    job, run, _ = pipeline_run
    tasks = set(job["pipelineSpec"]["root"]["dag"]["tasks"])
    assert len(tasks) == 10 and set(run.outputs) == tasks - set(NOT_RUN)
    # Each task started only after every task it depends on in the compiled DAG had finished.
    for task_id, needs in dependencies(job).items():
        for upstream in needs if task_id in run.started else ():
            assert run.ended[upstream] <= run.started[task_id], (upstream, task_id)
    assert dependencies(job)["Pusher"] >= {"Trainer", "Evaluator"}
    for task_id in run.outputs:
        # The compiled executor of every task but ExampleGen's (see the module docstring).
        assert container(compiled_job, task_id)["args"][1] != LOCAL_EXAMPLE_GEN
    # Every artifact a task consumed is one its producer wrote, with the metadata it reported.
    examples = run.invocations["StatisticsGen"]["inputs"]["artifacts"]["examples"]["artifacts"][0]
    assert json.loads(examples["metadata"]["split_names"]) == ["train", "eval", "test"]
    assert Path(examples["uri"], "Split-test").is_dir()


def test_the_evaluator_blesses_the_trained_model(pipeline_run):
    _, run, _ = pipeline_run
    blessing = run.artifact("Evaluator", "blessing")
    assert blessing["metadata"]["blessed"] == 1
    assert Path(blessing["uri"], "BLESSED").is_file()
    # First run in an empty bucket: no baseline, the floor alone decides.
    assert run.artifact("baseline_resolver", "model")["metadata"]["registry_version"] == ""
    accuracy = evaluation_accuracy(run.artifact("Evaluator", "evaluation")["uri"])
    assert accuracy["candidate"] >= 0.70 and "baseline" not in accuracy


def test_the_pusher_publishes_the_blessed_model_into_the_bucket_registry(pipeline_run):
    _, run, registry_root = pipeline_run
    pushed = run.artifact("Pusher", "pushed_model")["metadata"]
    assert (pushed["pushed"], pushed["pushed_version"]) == (1, "v1")
    version = open_registry(registry_root, "mnist").resolve()
    assert version.name == "v1" and version.is_default
    assert pushed["pushed_destination"] == version.saved_model_uri
    model, blessing = run.artifact("Trainer", "model"), run.artifact("Evaluator", "blessing")
    # Vertex's artifact resource names → the int64 ids TFX's executors see, recorded as lineage.
    assert version.metadata.model_artifact_id == _get_hashed_id(model["name"], {})
    assert version.metadata.blessing_artifact_id == _get_hashed_id(blessing["name"], {})
    assert blessing["metadata"]["current_model_id"] == model["name"]
    assert version.metadata.extra["model_uri"] == model["uri"]
    assert version.metadata.extra["pipeline_name"] == PIPELINE
    accuracy = evaluation_accuracy(run.artifact("Evaluator", "evaluation")["uri"])
    assert version.metadata.test_accuracy == pytest.approx(accuracy["candidate"])
    with tf.io.gfile.GFile(f"{version.saved_model_uri}/saved_model.pb", "rb") as f:
        assert f.read() == Path(model["uri"], "Format-Serving", "saved_model.pb").read_bytes()


def _test_rows(job: dict, settings) -> tuple[np.ndarray, np.ndarray]:
    """The rows the Evaluator was given: the compiled test split's query."""
    params = job["pipelineSpec"]["root"]["dag"]["tasks"]["BigQueryExampleGen"]["inputs"]["parameters"]
    splits = json.loads(params["input_config"]["runtimeValue"]["constantValue"]["stringValue"])["splits"]
    sql = next(s["pattern"] for s in splits if s["name"] == "test")
    _, labels, images = arrow_to_numpy(query_arrow(settings, sql))
    return labels, images


def test_the_function_bundle_serves_what_the_pipeline_blessed(pipeline_run, vertex_data, tmp_path):
    job, run, registry_root = pipeline_run
    version = open_registry(registry_root, "mnist").resolve()  # nothing to serve: fails here, at once
    settings = load_settings(environ={}, project=oc.PROJECT, registry_root=registry_root, log_predictions=False)
    server, _ = start_bundle_server(tmp_path, settings)
    try:
        labels, images = _test_rows(job, vertex_data)
        assert len(labels) == 1000
        wait_ready(server)
        class_ids = []
        for start in range(0, len(images), 500):
            status, body, headers = server.request(
                "POST", f"/v1/projects/{oc.PROJECT}/models/mnist:predict",
                {"instances": images[start:start + 500].tolist()}, timeout=120)
            assert status == 200, (body, server.log()[-3000:])
            assert headers["X-Model-Version"] == "mnist/v1"
            class_ids += [p["class_ids"][0] for p in body["predictions"]]
    finally:
        server.stop()
    # The SavedModel the Trainer wrote, loaded here, gives the same classes...
    model_dir = Path(run.artifact("Trainer", "model")["uri"], "Format-Serving")
    serving = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    expected = serving(image=tf.constant(images, tf.float32))["class_ids"].numpy().reshape(-1)
    assert class_ids == expected.tolist()
    # ... and on the Evaluator's test rows the served answers score the Evaluator's accuracy.
    served_accuracy = float(np.mean(np.array(class_ids) == labels))
    assert served_accuracy == pytest.approx(version.metadata.test_accuracy, abs=1.5 / len(labels))
