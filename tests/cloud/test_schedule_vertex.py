"""`mlpipe schedule-vertex`: the Schedule request is built from the compiled PipelineJob as the
Vertex AI API message, offline; `--dry-run` prints it and sends nothing."""

from __future__ import annotations

import json

import pytest
from google.cloud.aiplatform_v1.types import Schedule

from mlpipe.cli import main
from mlpipe.config import load_settings
from mlpipe.errors import UsageError
from pipeline.cloud_config import CloudConfig
from pipeline.schedule import build_schedule
from tests.cloud import offline_compile as oc

JOB = {
    "displayName": "mnist-automl",
    "pipelineSpec": {"pipelineInfo": {"name": "mnist-automl"},
                     "root": {"dag": {"tasks": {"Trainer": {"taskInfo": {"name": "Trainer"}},
                                                "Pusher": {"taskInfo": {"name": "Pusher"}}}}}},
    "runtimeConfig": {"gcsOutputDirectory": "gs://elsewhere", "parameterValues": {"fingerprint": "abc"}},
}


def _cloud(**overrides) -> CloudConfig:
    return CloudConfig.from_settings(load_settings(
        environ={}, project=oc.PROJECT, region=oc.REGION, gcs_root=oc.GCS_ROOT, image=oc.IMAGE, **overrides))


def test_schedule_message_runs_the_compiled_job_in_this_project():
    schedule = build_schedule(_cloud(service_account=oc.SERVICE_ACCOUNT), JOB, "mnist-automl",
                              "0 3 * * 1", "Europe/Amsterdam", enable_cache=False)
    assert isinstance(schedule, Schedule)
    assert schedule.display_name == "mnist-automl-schedule"
    assert schedule.cron == "TZ=Europe/Amsterdam 0 3 * * 1"
    assert schedule.max_concurrent_run_count == 1
    request = schedule.create_pipeline_job_request
    assert request.parent == f"projects/{oc.PROJECT}/locations/{oc.REGION}"
    job = request.pipeline_job
    assert job.service_account == oc.SERVICE_ACCOUNT
    assert job.runtime_config.gcs_output_directory == f"{oc.GCS_ROOT}/pipelines/mnist-automl"
    assert job.runtime_config.parameter_values["fingerprint"] == "abc"
    tasks = job.pipeline_spec["root"]["dag"]["tasks"]
    assert all(tasks[t]["cachingOptions"]["enableCache"] is False for t in ("Trainer", "Pusher"))


def test_scheduled_runs_always_read_the_tables_afresh():
    job = {**JOB, "pipelineSpec": {**JOB["pipelineSpec"], "root": {"dag": {"tasks": {
        "BigQueryExampleGen": {}, "Trainer": {}}}}}}
    schedule = build_schedule(_cloud(), job, "mnist-automl", "0 3 * * 1", "UTC", enable_cache=True)
    tasks = schedule.create_pipeline_job_request.pipeline_job.pipeline_spec["root"]["dag"]["tasks"]
    assert tasks["BigQueryExampleGen"]["cachingOptions"]["enableCache"] is False
    assert tasks["Trainer"]["cachingOptions"]["enableCache"] is True


@pytest.mark.parametrize("cron", ["every monday", "0 3 * *"])
def test_a_malformed_cron_is_refused(cron):
    with pytest.raises(UsageError, match="--cron needs the 5 fields"):
        build_schedule(_cloud(), JOB, "mnist-automl", cron, "UTC", enable_cache=True)


def test_dry_run_prints_the_request_and_needs_no_credentials(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    template = tmp_path / "job.json"
    template.write_text(json.dumps(JOB))
    argv = ["schedule-vertex", *oc.COMMON, "--template", str(template), "--cron", "30 2 * * *", "--dry-run"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"].startswith("ScheduleService.CreateSchedule")
    assert doc["resource"] == f"projects/{oc.PROJECT}/locations/{oc.REGION}"
    assert doc["schedule"]["cron"] == "TZ=UTC 30 2 * * *"
    assert doc["schedule"]["createPipelineJobRequest"]["pipelineJob"]["runtimeConfig"]["gcsOutputDirectory"] \
        == f"{oc.GCS_ROOT}/pipelines/mnist-automl"
    assert main([*argv, "--pause"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "ScheduleService.PauseSchedule"


def test_without_dry_run_and_credentials_it_fails_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # no metadata server to find
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    template = tmp_path / "job.json"
    template.write_text(json.dumps(JOB))
    assert main(["schedule-vertex", *oc.COMMON, "--template", str(template)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: no Google Cloud credentials found")
