"""Cloud settings: MLPIPE_* env vars and flags → one validated CloudConfig; one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlpipe.cli import main
from mlpipe.config import REPO_ROOT, load_settings
from mlpipe.errors import UsageError
from pipeline.cloud_config import IMAGE_SOURCE_DIR, CloudConfig

CLOUD_ENV = {
    "MLPIPE_PROJECT": "my-proj",
    "MLPIPE_REGION": "europe-west4",
    "MLPIPE_GCS_ROOT": "gs://my-bucket/mnist/",
    "MLPIPE_IMAGE": "europe-west4-docker.pkg.dev/my-proj/mlpipe/mnist-automl:7",
    "MLPIPE_PUSH_TARGET": "vertex",
    "MLPIPE_SERVICE_ACCOUNT": "pipelines@my-proj.iam.gserviceaccount.com",
    "MLPIPE_DATAFLOW_MAX_WORKERS": "8",
}


def test_env_vars_populate_the_cloud_config():
    cloud = CloudConfig.from_settings(load_settings(environ=CLOUD_ENV))
    assert cloud == CloudConfig(
        project="my-proj",
        region="europe-west4",
        gcs_root="gs://my-bucket/mnist",
        image="europe-west4-docker.pkg.dev/my-proj/mlpipe/mnist-automl:7",
        dataflow_temp_location="gs://my-bucket/mnist/tmp",
        push_target="vertex",
        service_account="pipelines@my-proj.iam.gserviceaccount.com",
        dataflow_max_workers=8,
    )
    assert cloud.pipeline_root("mnist-automl") == "gs://my-bucket/mnist/pipelines/mnist-automl"


def test_flags_override_env_vars():
    settings = load_settings(environ=CLOUD_ENV, region="us-east1", push_target="registry",
                             dataflow_temp_location="gs://other/tmp")
    cloud = CloudConfig.from_settings(settings)
    assert (cloud.region, cloud.push_target, cloud.dataflow_temp_location) == (
        "us-east1", "registry", "gs://other/tmp")


def test_defaults_target_vertex_with_sized_dataflow_workers():
    env = {k: v for k, v in CLOUD_ENV.items() if k not in ("MLPIPE_PUSH_TARGET", "MLPIPE_DATAFLOW_MAX_WORKERS")}
    cloud = CloudConfig.from_settings(load_settings(environ=env))
    assert cloud.push_target == "vertex"
    assert cloud.registry_root == "gs://my-bucket/mnist/registry"
    args = cloud.beam_args()
    assert {"--disk_size_gb=50", "--machine_type=n1-standard-4", "--max_num_workers=4"} <= set(args)
    assert cloud.vertex_keep_previous == 1 and cloud.trainer_machine_type == ""


def test_dataflow_beam_args():
    cloud = CloudConfig.from_settings(load_settings(environ=CLOUD_ENV))
    args = cloud.beam_args()
    assert "--runner=DataflowRunner" in args
    assert "--project=my-proj" in args
    assert "--region=europe-west4" in args
    assert "--temp_location=gs://my-bucket/mnist/tmp" in args
    assert f"--sdk_container_image={cloud.image}" in args
    assert "--experiments=use_runner_v2" in args
    assert "--max_num_workers=8" in args
    assert "--service_account_email=pipelines@my-proj.iam.gserviceaccount.com" in args


def test_every_missing_setting_is_named_in_one_error():
    with pytest.raises(UsageError) as e:
        CloudConfig.from_settings(load_settings(environ={}))
    message = str(e.value)
    assert "\n" not in message
    for name in ("--project", "MLPIPE_PROJECT", "--gcs-root", "MLPIPE_GCS_ROOT", "--image", "MLPIPE_IMAGE"):
        assert name in message


@pytest.mark.parametrize(("override", "expected"), [
    ({"MLPIPE_GCS_ROOT": "/local/dir"}, "--gcs-root must be a gs:// URI"),
    ({"MLPIPE_DATAFLOW_TEMP_LOCATION": "tmp"}, "--dataflow-temp-location must be a gs:// URI"),
    ({"MLPIPE_SERVICE_ACCOUNT": "pipelines"}, "--service-account must be an e-mail address"),
    ({"MLPIPE_DATAFLOW_MAX_WORKERS": "0"}, "--dataflow-max-workers must be at least 1"),
    ({"MLPIPE_DATAFLOW_DISK_SIZE_GB": "10"}, "--dataflow-disk-size-gb must be at least 30"),
    ({"MLPIPE_VERTEX_KEEP_PREVIOUS": "-1"}, "--keep-previous must be 0 or more"),
])
def test_malformed_settings_are_refused(override, expected):
    with pytest.raises(UsageError, match=re.escape(expected)):
        CloudConfig.from_settings(load_settings(environ={**CLOUD_ENV, **override}))


def test_unknown_push_target_is_refused():
    with pytest.raises(UsageError, match="push_target must be 'vertex' or 'registry'"):
        load_settings(environ={"MLPIPE_PUSH_TARGET": "sagemaker"})
    with pytest.raises(UsageError, match="shut down on 2025-01-31"):
        load_settings(environ={"MLPIPE_PUSH_TARGET": "ai_platform"})


def test_compile_vertex_without_settings_fails_in_one_line(capsys, monkeypatch):
    for var in CLOUD_ENV:
        monkeypatch.delenv(var, raising=False)
    assert main(["compile-vertex", "--gcs-root", "gs://b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: cloud settings missing or invalid: --project")
    assert "--image" in err[0] and "--gcs-root" not in err[0]


def test_dockerfile_builds_on_the_tfx_image_with_the_package_installed():
    text = (REPO_ROOT / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0] == "FROM gcr.io/tfx-oss-public/tfx:1.15.1"
    assert re.search(r"pip install .*--no-deps adanet==0\.9\.0", text)
    assert f"WORKDIR {IMAGE_SOURCE_DIR}" in instructions
    # The packages setup.py installs are all copied, and installed from the copy.
    for package in ("mlpipe", "pipeline", "models"):
        assert f"COPY {package} ./{package}" in instructions
    assert re.search(r"pip install .*--no-deps \.( |$)", text)
    assert (REPO_ROOT / "pipeline" / "schema" / "schema.pbtxt").is_file()
    # No ENTRYPOINT: the base image's Beam boot is what Dataflow workers start.
    assert not any(line.startswith(("ENTRYPOINT", "CMD")) for line in instructions)


def test_dockerignore_keeps_environments_out_of_the_build_context():
    ignored = set(Path(REPO_ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".venv-bq", ".mlpipe", ".git"} <= ignored
