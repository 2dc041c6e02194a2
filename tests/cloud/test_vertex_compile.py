"""`mlpipe compile-vertex`: the compiled PipelineJob is valid, complete, what the config says, and
compiling needs no network. One compile run (a subprocess, see offline_compile.py) feeds every test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from mlpipe.config import REPO_ROOT, load_settings
from pipeline.cloud_config import IMAGE_SCHEMA_FILE, CloudConfig
from pipeline.queries import split_queries
from tests.cloud import offline_compile as oc

BIGQUERY_EXECUTOR = "tfx.extensions.google_cloud_big_query.example_gen.executor.Executor"
AI_PLATFORM_PUSHER = "tfx.extensions.google_cloud_ai_platform.pusher.executor.Executor"
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
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    for variant in ("ai_platform", "vertex"):
        assert results[variant]["rc"] == 0, results[variant]["stderr"][-3000:]
        results[f"{variant}_job"] = json.loads((out / f"{variant}.json").read_text())
    results["ai_platform_size"] = (out / "ai_platform.json").stat().st_size
    return results


def _cloud(**overrides) -> CloudConfig:
    settings = load_settings(environ={}, project=oc.PROJECT, region=oc.REGION, gcs_root=oc.GCS_ROOT,
                             image=oc.IMAGE, **overrides)
    return CloudConfig.from_settings(settings)


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
    for variant in ("ai_platform", "vertex"):
        job = json_format.ParseDict(compiled[f"{variant}_job"], pipeline_spec_pb2.PipelineJob())
        spec = json_format.ParseDict(compiled[f"{variant}_job"]["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
        assert job.display_name == spec.pipeline_info.name == "mnist-automl"
        assert spec.sdk_version == "tfx-1.15.1"
        assert job.runtime_config.gcs_output_directory == f"{oc.GCS_ROOT}/pipelines/mnist-automl"
        for task_id, task in spec.root.dag.tasks.items():
            assert task.component_ref.name in spec.components, task_id


def test_every_component_of_the_local_pipeline_is_compiled(compiled):
    tasks = set(compiled["ai_platform_job"]["pipelineSpec"]["root"]["dag"]["tasks"])
    # The resolver node compiles to one resolver task per input channel.
    tasks = {t.split("-")[0] for t in tasks}
    local = {"BigQueryExampleGen" if c == "LocalBigQueryExampleGen" else c
             for c in compiled["local"]["components"]}
    assert tasks == local
    assert len(local) == 9


def test_stock_bigquery_example_gen_runs_the_split_queries(compiled):
    executors = _executors(compiled["ai_platform_job"])
    assert executors["BigQueryExampleGen"]["args"][1] == BIGQUERY_EXECUTOR
    for variant, limits in (("ai_platform", None), ("vertex", {"train": 3000, "eval": 500, "test": 1000})):
        splits = json.loads(_param(compiled[f"{variant}_job"], "BigQueryExampleGen", "input_config"))["splits"]
        expected = split_queries(oc.PROJECT, "mnist", limits)
        assert [(s["name"], s["pattern"]) for s in splits] == [(q.split, q.sql) for q in expected]
        assert all(f"`{oc.PROJECT}.mnist." in s["pattern"] for s in splits)


def test_every_step_runs_in_the_image_with_beam_on_dataflow(compiled):
    for variant, cloud in (("ai_platform", _cloud()),
                           ("vertex", _cloud(push_target="vertex", service_account=oc.SERVICE_ACCOUNT))):
        executors = _executors(compiled[f"{variant}_job"])
        assert len(executors) == 8  # every task but the two resolver tasks
        for task_id, container in executors.items():
            assert container["image"] == oc.IMAGE, task_id
            assert container["command"] == RUN_EXECUTOR, task_id
            assert container["args"][4:] == list(cloud.beam_args()), task_id
    args = _executors(compiled["vertex_job"])["Transform"]["args"]
    assert "--runner=DataflowRunner" in args
    assert f"--temp_location={oc.GCS_ROOT}/tmp" in args
    assert f"--region={oc.REGION}" in args and f"--project={oc.PROJECT}" in args
    assert f"--sdk_container_image={oc.IMAGE}" in args
    assert f"--service_account_email={oc.SERVICE_ACCOUNT}" in args


def test_pusher_targets_ai_platform_or_a_vertex_endpoint(compiled):
    for variant in ("ai_platform", "vertex"):
        assert _executors(compiled[f"{variant}_job"])["Pusher"]["args"][1] == AI_PLATFORM_PUSHER
    ai_platform = json.loads(_param(compiled["ai_platform_job"], "Pusher", "custom_config"))
    assert ai_platform == {"ai_platform_serving_args": {
        "model_name": "mnist", "project_id": oc.PROJECT, "regions": [oc.REGION], "runtime_version": "2.11"}}
    vertex = json.loads(_param(compiled["vertex_job"], "Pusher", "custom_config"))
    assert vertex["ai_platform_enable_vertex"] is True
    assert vertex["ai_platform_vertex_region"] == oc.REGION
    assert vertex["ai_platform_vertex_container_image_uri"].startswith(
        "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15")
    assert vertex["ai_platform_serving_args"]["endpoint_name"] == "mnist"
    assert vertex["ai_platform_serving_args"]["project_id"] == oc.PROJECT


def test_no_path_of_the_compiling_machine_reaches_the_cloud(compiled):
    for variant in ("ai_platform", "vertex"):
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
