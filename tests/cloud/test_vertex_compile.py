"""`mlpipe compile-vertex`: the compiled PipelineJob is valid, complete, what the config says, and
compiling needs no network. One compile run (a subprocess, see offline_compile.py) feeds every test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2.container.kubeflow_v2_entrypoint_utils import _get_hashed_id

from mlpipe.config import REPO_ROOT, load_settings
from mlpipe.registry import open_registry
from pipeline.cloud_config import IMAGE_SCHEMA_FILE, CloudConfig
from pipeline.queries import split_queries
from tests.cloud import offline_compile as oc
from tests.cloud.run_compiled_task import executor_input, run_task

BIGQUERY_EXECUTOR = "tfx.extensions.google_cloud_big_query.example_gen.executor.Executor"
REGISTRY_PUSHER = "pipeline.components.registry_pusher.Executor"
VERTEX_PUSHER = "pipeline.components.vertex_pusher.Executor"
BASELINE_STEP = "pipeline.components.registry_baseline.RegistryBaselineExecutor"
BASELINE_AWARE_EVALUATOR = "pipeline.components.registry_baseline.BaselineAwareEvaluatorExecutor"
VERTEX_TRAINER = "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"
RUN_EXECUTOR = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("vertex")
    home = out / "home"
    home.mkdir()
    # No credentials of this machine's user, no MLPIPE_* settings: only what the test passes.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLPIPE_", "GOOGLE_", "CLOUDSDK_")) and "proxy" not in k.lower()}
    env.update(HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "tests.cloud.offline_compile", str(out)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    for variant in VARIANTS:
        assert results[variant]["rc"] == 0, results[variant]["stderr"][-3000:]
        results[f"{variant}_job"] = json.loads((out / f"{variant}.json").read_text())
    return results


VARIANTS = ("default", "custom")


def _cloud(**overrides) -> CloudConfig:
    settings = load_settings(environ={}, project=oc.PROJECT, region=oc.REGION, gcs_root=oc.GCS_ROOT,
                             image=oc.IMAGE, **overrides)
    return CloudConfig.from_settings(settings)


CUSTOM_CLOUD = dict(
    push_target="registry", service_account=oc.SERVICE_ACCOUNT, trainer_machine_type="n1-standard-8",
    dataflow_machine_type="n2-standard-2", dataflow_disk_size_gb=80, dataflow_network=oc.NETWORK,
    dataflow_subnetwork=oc.SUBNETWORK, dataflow_max_workers=2, vertex_keep_previous=0,
)


def _param(job: dict, task: str, name: str) -> str:
    value = job["pipelineSpec"]["root"]["dag"]["tasks"][task]["inputs"]["parameters"][name]
    return value["runtimeValue"]["constantValue"]["stringValue"]


def _executors(job: dict) -> dict[str, dict]:
    """task id → its container spec (resolver tasks have none)."""
    spec = job["pipelineSpec"]
    out = {}
    for task_id, task in spec["root"]["dag"]["tasks"].items():
        label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        container = spec["deploymentSpec"]["executors"][label].get("container")
        if container is not None:
            out[task_id] = container
    return out


def test_compiling_needs_no_network(compiled):
    assert compiled["offline"] == {"attempts": [], "proxy_connections": 0}


def test_compiled_json_parses_into_the_kfp_pipeline_job_proto(compiled):
    for variant in VARIANTS:
        job = json_format.ParseDict(compiled[f"{variant}_job"], pipeline_spec_pb2.PipelineJob())
        spec = json_format.ParseDict(compiled[f"{variant}_job"]["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
        assert job.display_name == spec.pipeline_info.name == "mnist-automl"
        assert spec.sdk_version == "tfx-1.15.1"
        assert job.runtime_config.gcs_output_directory == f"{oc.GCS_ROOT}/pipelines/mnist-automl"
        for task_id, task in spec.root.dag.tasks.items():
            assert task.component_ref.name in spec.components, task_id


def test_every_component_of_the_local_pipeline_is_compiled(compiled):
    local = {"BigQueryExampleGen" if c == "LocalBigQueryExampleGen" else c
             for c in compiled["local"]["components"]}
    assert len(local) == 9
    for variant, extra in (("default", {"VertexPusher"}), ("custom", set())):
        tasks = set(compiled[f"{variant}_job"]["pipelineSpec"]["root"]["dag"]["tasks"])
        # The resolver node compiles to one resolver task per input channel.
        tasks = {t.split("-")[0] for t in tasks}
        assert tasks == local | extra, variant


def test_stock_bigquery_example_gen_runs_the_split_queries(compiled):
    executors = _executors(compiled["default_job"])
    assert executors["BigQueryExampleGen"]["args"][1] == BIGQUERY_EXECUTOR
    for variant, limits in (("default", None), ("custom", {"train": 3000, "eval": 500, "test": 1000})):
        splits = json.loads(_param(compiled[f"{variant}_job"], "BigQueryExampleGen", "input_config"))["splits"]
        expected = split_queries(oc.PROJECT, "mnist", limits)
        assert [(s["name"], s["pattern"]) for s in splits] == [(q.split, q.sql) for q in expected]
        assert all(f"`{oc.PROJECT}.mnist." in s["pattern"] for s in splits)


def _beam_args(container: dict) -> list[str]:
    return container["args"][4:]


def test_every_step_runs_in_the_image_with_beam_on_dataflow(compiled):
    for variant, cloud in (("default", _cloud()), ("custom", _cloud(**CUSTOM_CLOUD))):
        executors = _executors(compiled[f"{variant}_job"])
        for task_id, container in executors.items():
            assert container["image"] == oc.IMAGE, task_id
            assert container["command"] == RUN_EXECUTOR, task_id
            assert _beam_args(container) == list(cloud.beam_args()), task_id


def test_dataflow_workers_get_machine_disk_and_network(compiled):
    default = _beam_args(_executors(compiled["default_job"])["Transform"])
    for arg in ("--runner=DataflowRunner", f"--temp_location={oc.GCS_ROOT}/tmp", f"--region={oc.REGION}",
                f"--project={oc.PROJECT}", f"--sdk_container_image={oc.IMAGE}", "--disk_size_gb=50",
                "--machine_type=n1-standard-4", "--max_num_workers=4"):
        assert arg in default, arg
    assert not any(a.startswith(("--network", "--subnetwork", "--service_account_email")) for a in default)
    custom = _beam_args(_executors(compiled["custom_job"])["Evaluator"])
    for arg in ("--disk_size_gb=80", "--machine_type=n2-standard-2", "--max_num_workers=2",
                f"--network={oc.NETWORK}", f"--subnetwork={oc.SUBNETWORK}",
                f"--service_account_email={oc.SERVICE_ACCOUNT}"):
        assert arg in custom, arg


def test_default_push_goes_to_the_bucket_registry_then_a_vertex_endpoint(compiled):
    job = compiled["default_job"]
    executors = _executors(job)
    assert executors["Pusher"]["args"][1] == REGISTRY_PUSHER
    assert executors["VertexPusher"]["args"][1] == VERTEX_PUSHER
    registry = json.loads(_param(job, "Pusher", "custom_config"))
    assert registry["registry_root"] == f"{oc.GCS_ROOT}/registry"
    assert registry["extra"]["pipeline_name"] == "mnist-automl"
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert "Pusher" in tasks["VertexPusher"]["dependentTasks"]
    vertex = json.loads(_param(job, "VertexPusher", "custom_config"))
    assert vertex["ai_platform_enable_vertex"] is True
    assert vertex["ai_platform_vertex_region"] == oc.REGION
    assert vertex["ai_platform_vertex_container_image_uri"].startswith(
        "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15")
    serving = vertex["ai_platform_serving_args"]
    assert (serving["endpoint_name"], serving["project_id"], serving["traffic_percentage"]) == (
        "mnist", oc.PROJECT, 100)
    assert vertex["mlpipe_keep_previous"] == 1


def test_baseline_is_the_bucket_registry_default_of_this_pipeline(compiled):
    job = compiled["default_job"]
    executors = _executors(job)
    assert executors["baseline_resolver"]["args"][1] == BASELINE_STEP
    assert executors["Evaluator"]["args"][1] == BASELINE_AWARE_EVALUATOR
    assert _param(job, "baseline_resolver", "registry_root") == f"{oc.GCS_ROOT}/registry"
    assert _param(job, "baseline_resolver", "pipeline_name") == "mnist-automl"
    assert "LatestBlessedModelStrategy" not in json.dumps(job)
    inputs = job["pipelineSpec"]["root"]["dag"]["tasks"]["Evaluator"]["inputs"]["artifacts"]
    assert inputs["baseline_model"]["taskOutputArtifact"]["producerTask"] == "baseline_resolver"


def test_data_fingerprint_is_a_run_time_parameter_of_the_example_gen(compiled, tmp_path):
    """A changed fingerprint (computed at submit time) changes ExampleGen's inputs, hence its cache key."""
    job = compiled["default_job"]
    spec = job["pipelineSpec"]
    params = spec["root"]["dag"]["tasks"]["BigQueryExampleGen"]["inputs"]["parameters"]
    assert params["source_fingerprint"] == {"componentInputParameter": "source_fingerprint"}
    assert "source_fingerprint" in spec["root"]["inputDefinitions"]["parameters"]
    # The job submit() would start accepts the value (built offline, nothing sent).
    from google.auth.credentials import AnonymousCredentials

    from pipeline.vertex import pipeline_job

    template = tmp_path / "job.json"
    template.write_text(json.dumps(job))
    built = pipeline_job(_cloud(), template, "mnist-automl", True, AnonymousCredentials(),
                         {"source_fingerprint": "train=p.mnist.train:rows=50000;xor=1;sum=2"})
    config = built._gca_resource.runtime_config
    # TFX compiles pipeline-spec schema 2.0.0, whose parameters travel as `parameters` (typed Values).
    value = (config.parameter_values["source_fingerprint"] if "source_fingerprint" in config.parameter_values
             else config.parameters["source_fingerprint"].string_value)
    assert value == "train=p.mnist.train:rows=50000;xor=1;sum=2"


def test_registry_push_target_has_no_endpoint(compiled):
    tasks = compiled["custom_job"]["pipelineSpec"]["root"]["dag"]["tasks"]
    assert "VertexPusher" not in tasks
    assert _executors(compiled["custom_job"])["Pusher"]["args"][1] == REGISTRY_PUSHER


def test_no_legacy_ai_platform_anywhere(compiled):
    for variant in VARIANTS:
        text = json.dumps(compiled[f"{variant}_job"])
        for legacy in ("ml.googleapis.com", "runtime_version"):
            assert legacy not in text, (variant, legacy)
    readme = (REPO_ROOT / "README.md").read_text()
    for legacy in ("ml.googleapis.com", "gcloud ai-platform", "runtime 2.11", "ml.developer"):
        assert legacy not in readme, legacy


def test_trainer_runs_in_the_step_or_as_a_vertex_training_job(compiled):
    default = _executors(compiled["default_job"])["Trainer"]["args"][1]
    assert default == "tfx.components.trainer.executor.GenericExecutor"
    custom = _executors(compiled["custom_job"])["Trainer"]["args"][1]
    assert custom == VERTEX_TRAINER
    config = json.loads(_param(compiled["custom_job"], "Trainer", "custom_config"))
    assert config["ai_platform_enable_vertex"] is True
    assert config["ai_platform_vertex_region"] == oc.REGION
    spec = config["ai_platform_training_args"]["job_spec"]
    assert spec["worker_pool_specs"] == [{"machine_spec": {"machine_type": "n1-standard-8"}, "replica_count": 1,
                                          "container_spec": {"image_uri": oc.IMAGE}}]
    assert spec["service_account"] == oc.SERVICE_ACCOUNT
    assert "training" in config  # the AdaNet budget travels as in the local Trainer


def test_no_path_of_the_compiling_machine_reaches_the_cloud(compiled):
    for variant in VARIANTS:
        text = json.dumps(compiled[f"{variant}_job"])
        assert str(REPO_ROOT) not in text
        assert _param(compiled[f"{variant}_job"], "ImportSchemaGen", "schema_file") == IMAGE_SCHEMA_FILE


def test_local_pipeline_is_unchanged(compiled):
    local = compiled["local"]
    assert local["schema_file"] == str(REPO_ROOT / "pipeline" / "schema" / "schema.pbtxt")
    # The driver runs in REPO_ROOT, where the default state dir is `.mlpipe`.
    assert local["pipeline_root"] == str(REPO_ROOT / ".mlpipe" / "pipelines" / "mnist-automl")
    assert local["beam_args"] == ["--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]
    assert "LocalBigQueryExampleGen" in local["components"]


def test_submit_without_credentials_fails_in_one_line(compiled):
    submit = compiled["submit"]
    assert submit["rc"] == 1
    lines = submit["stderr"].strip().splitlines()
    assert "Traceback" not in submit["stderr"]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:]
    assert lines[-1].startswith("error: no Google Cloud credentials found")
    assert "compiled 10 tasks" in submit["stdout"]


@pytest.mark.e2e
def test_compiled_registry_tasks_run_through_the_container_entry_point(compiled, tmp_path, fake_models):
    """The compiled baseline and Pusher tasks, run by `kubeflow_v2_run_executor` with the ExecutorInput
    Vertex would pass (tests/cloud/run_compiled_task.py), in DAG order, with a local stand-in of the
    bucket registry: no baseline on the first run; the blessed model becomes v1 with its lineage ids;
    the next run's baseline is v1. (The Trainer's output is a contract SavedModel here.)"""
    job = compiled["default_job"]
    registry_root = (tmp_path / "bucket" / "registry").as_uri()
    overrides = {"registry_root": registry_root}
    first = run_task(job, "baseline_resolver",
                     executor_input(job, "baseline_resolver", {}, tmp_path / "run1", overrides))
    assert first["artifacts"]["model"]["artifacts"][0]["metadata"]["registry_version"] == ""

    model_uri = tmp_path / "run1" / "Trainer" / "model"
    shutil.copytree(fake_models[0], model_uri / "Format-Serving")
    blessing_uri = tmp_path / "run1" / "Evaluator" / "blessing"
    blessing_uri.mkdir(parents=True)
    (blessing_uri / "BLESSED").touch()
    store = "projects/offline/locations/local/metadataStores/default/artifacts"
    config = json.loads(_param(job, "Pusher", "custom_config"))
    inputs = {"model": [{"name": f"{store}/trainer-model", "uri": str(model_uri)}],
              "model_blessing": [{"name": f"{store}/evaluator-blessing", "uri": str(blessing_uri),
                                  "custom_properties": {"blessed": 1}}]}
    pushed = run_task(job, "Pusher", executor_input(job, "Pusher", inputs, tmp_path / "run1", {
        "custom_config": json.dumps({**config, "registry_root": registry_root})}))
    meta = pushed["artifacts"]["pushed_model"]["artifacts"][0]["metadata"]
    assert (meta["pushed"], meta["pushed_version"]) == (1, "v1")
    version = open_registry(registry_root, "mnist").resolve()
    assert version.name == "v1"
    # Vertex's artifact resource name → TFX's int64 id, as recorded in the registry's lineage.
    assert version.metadata.model_artifact_id == _get_hashed_id(f"{store}/trainer-model", {})
    assert version.metadata.extra["pipeline_name"] == "mnist-automl"

    second = run_task(job, "baseline_resolver",
                      executor_input(job, "baseline_resolver", {}, tmp_path / "run2", overrides))
    baseline = second["artifacts"]["model"]["artifacts"][0]
    assert baseline["metadata"]["registry_version"] == "v1"
    assert (Path(baseline["uri"]) / "Format-Serving" / "saved_model.pb").read_bytes() == (
        fake_models[0] / "saved_model.pb").read_bytes()
