"""`mlpipe schedule-vertex`: run the compiled pipeline on a cron schedule in Vertex AI Pipelines.

The request is built here as the API's own message (`google.cloud.aiplatform_v1.Schedule` with a
`CreatePipelineJobRequest`, from the google-cloud-aiplatform in requirements.lock), so `--dry-run`
prints exactly what would be sent, offline. One schedule per pipeline, found by its display name:
the first call creates it, later calls update its cron and pipeline (a new image, new flags), and
`--pause` / `--resume` switch it off and on. Each scheduled run is the compiled PipelineJob with the
bucket registry's default as its baseline and the bucket registry as its push target, as `--submit`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from mlpipe.config import Settings
from mlpipe.errors import UsageError

log = logging.getLogger(__name__)

ACTIONS = ("apply", "pause", "resume")
EXAMPLE_GEN_TASK = "BigQueryExampleGen"


def schedule_display_name(pipeline_name: str) -> str:
    return f"{pipeline_name}-schedule"


def build_schedule(cloud, job: dict[str, Any], pipeline_name: str, cron: str, timezone: str,
                   enable_cache: bool, max_concurrent_runs: int = 1):
    """The `Schedule` message: `cron` (in `timezone`) starting the compiled PipelineJob `job`."""
    from google.cloud.aiplatform_v1.types import CreatePipelineJobRequest, PipelineJob, Schedule
    from google.protobuf import json_format, struct_pb2

    if len(cron.split()) != 5:
        raise UsageError(f"--cron needs the 5 fields of a crontab line, e.g. '0 3 * * 1', not {cron!r}")
    if max_concurrent_runs < 1:
        raise UsageError("--max-concurrent-runs must be at least 1")
    spec = json.loads(json.dumps(job["pipelineSpec"]))
    # What aiplatform.PipelineJob(enable_caching=...) does: the choice on every task.
    for task_id, task in spec["root"]["dag"]["tasks"].items():
        # A schedule's parameters are fixed when it is created, so no data fingerprint can key the
        # ExampleGen's cache: every scheduled run reads the tables afresh.
        task["cachingOptions"] = {"enableCache": enable_cache and task_id != EXAMPLE_GEN_TASK}
    pipeline_spec = struct_pb2.Struct()
    json_format.ParseDict(spec, pipeline_spec)
    runtime = job.get("runtimeConfig", {})
    pipeline_job = PipelineJob(
        display_name=pipeline_name,
        pipeline_spec=pipeline_spec,
        runtime_config=PipelineJob.RuntimeConfig(
            gcs_output_directory=cloud.pipeline_root(pipeline_name),
            parameter_values=runtime.get("parameterValues", {}),
        ),
        service_account=cloud.service_account,
        labels={"mlpipe-pipeline": pipeline_name},
    )
    parent = f"projects/{cloud.project}/locations/{cloud.region}"
    return Schedule(
        display_name=schedule_display_name(pipeline_name),
        cron=f"TZ={timezone} {cron}",
        max_concurrent_run_count=max_concurrent_runs,
        create_pipeline_job_request=CreatePipelineJobRequest(parent=parent, pipeline_job=pipeline_job),
    )


def request_text(method: str, target: str, schedule=None, update_mask: list[str] | None = None) -> str:
    """What `--dry-run` prints: the method, its resource and the message, as JSON."""
    from google.cloud.aiplatform_v1.types import Schedule
    from google.protobuf import json_format

    doc: dict[str, Any] = {"method": method, "resource": target}
    if schedule is not None:
        doc["schedule"] = json_format.MessageToDict(Schedule.pb(schedule))
    if update_mask:
        doc["updateMask"] = ",".join(update_mask)
    return json.dumps(doc, indent=2, sort_keys=True)


UPDATE_MASK = ["cron", "max_concurrent_run_count", "create_pipeline_job_request"]


def apply(cloud, action: str, schedule, dry_run: bool) -> str:
    """Create/update (`apply`), pause or resume the pipeline's schedule; returns what was done."""
    parent = f"projects/{cloud.project}/locations/{cloud.region}"
    if dry_run:
        if action == "apply":
            return request_text("ScheduleService.CreateSchedule (or UpdateSchedule if it exists)", parent,
                                schedule, UPDATE_MASK)
        return request_text(f"ScheduleService.{action.capitalize()}Schedule",
                            f"{parent}/schedules/<the schedule named {schedule.display_name}>")
    client = _client(cloud)
    existing = _find(client, parent, schedule.display_name)
    if action == "apply":
        from google.protobuf import field_mask_pb2

        if existing is None:
            created = client.create_schedule(parent=parent, schedule=schedule)
            return f"created {created.name} ({created.cron})"
        schedule.name = existing.name
        updated = client.update_schedule(schedule=schedule, update_mask=field_mask_pb2.FieldMask(paths=UPDATE_MASK))
        return f"updated {updated.name} ({updated.cron})"
    if existing is None:
        raise UsageError(f"no schedule named {schedule.display_name} in {parent}; create it first")
    getattr(client, f"{action}_schedule")(name=existing.name)
    return f"{action}d {existing.name}"


def _client(cloud):
    import google.auth
    from google.api_core.client_options import ClientOptions
    from google.auth import exceptions as auth_exc
    from google.cloud import aiplatform_v1

    from pipeline.vertex import CloudError

    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except auth_exc.DefaultCredentialsError:
        raise CloudError("no Google Cloud credentials found; run `gcloud auth application-default login` "
                         "or set GOOGLE_APPLICATION_CREDENTIALS (or use --dry-run)") from None
    return aiplatform_v1.ScheduleServiceClient(
        credentials=credentials,
        client_options=ClientOptions(api_endpoint=f"{cloud.region}-aiplatform.googleapis.com"))


def _find(client, parent: str, display_name: str):
    from google.api_core import exceptions as gexc

    from pipeline.vertex import CloudError

    try:
        for schedule in client.list_schedules(parent=parent, filter=f'display_name="{display_name}"'):
            return schedule
    except gexc.GoogleAPIError as e:
        raise CloudError(f"Vertex AI refused to list schedules: {str(e).strip().splitlines()[0]}") from None
    return None


# ---- the command ----------------------------------------------------------------------------------

def _schedule_vertex(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cli import cloud_settings, pipeline_config_from
    from pipeline.cloud_config import CloudConfig

    settings = cloud_settings(args, settings)
    cloud = CloudConfig.from_settings(settings)
    cfg = pipeline_config_from(args, settings)
    if args.template:
        template = Path(args.template)
        if not template.is_file():
            raise UsageError(f"template {template} does not exist; compile it with `mlpipe compile-vertex`")
    else:
        from pipeline.vertex import compile_vertex

        template = compile_vertex(cfg.on_vertex(), settings.vertex_dir / f"{cfg.pipeline_name}.json").path
    try:
        job = json.loads(template.read_text())
        job["pipelineSpec"]["root"]["dag"]["tasks"]
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{template} is not a compiled PipelineJob JSON") from None
    action = "pause" if args.pause else "resume" if args.resume else "apply"
    schedule = build_schedule(cloud, job, cfg.pipeline_name, args.cron, args.timezone, cfg.enable_cache,
                              args.max_concurrent_runs)
    print(apply(cloud, action, schedule, args.dry_run))
    return 0


def register(sub, add_settings_flags) -> None:
    from pipeline.cli import add_cloud_flags, add_pipeline_flags

    p = sub.add_parser(
        "schedule-vertex", help="create/update, pause or resume a Vertex AI schedule of the pipeline",
        description="Run the compiled pipeline on a cron schedule in Vertex AI Pipelines (one schedule per "
        "pipeline, named PIPELINE-schedule): create it, or update its cron and pipeline; --pause/--resume "
        "switch it off and on. --dry-run prints the request instead of sending it.",
    )
    p.add_argument("--cron", default="0 3 * * 1", help="crontab fields (default '0 3 * * 1': Mondays 03:00)")
    p.add_argument("--timezone", default="UTC", help="IANA time zone of --cron (default UTC)")
    p.add_argument("--max-concurrent-runs", dest="max_concurrent_runs", type=int, default=1,
                   help="runs of the schedule allowed at once (default 1)")
    p.add_argument("--template", help="a compiled PipelineJob JSON (default: compile the pipeline now)")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--pause", action="store_true", help="pause the existing schedule")
    state.add_argument("--resume", action="store_true", help="resume the paused schedule")
    p.add_argument("--dry-run", dest="dry_run", action="store_true",
                   help="print the request (method, resource, Schedule message) and send nothing")
    add_pipeline_flags(p)
    add_cloud_flags(p)
    add_settings_flags(p)
    p.set_defaults(handler=_schedule_vertex)
