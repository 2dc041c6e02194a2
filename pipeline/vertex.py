"""Vertex AI Pipelines: compile `create_pipeline(cfg)` with KubeflowV2DagRunner (offline) and submit it.

The compiler only serializes the pipeline: nothing is uploaded. `run_fn` and `preprocessing_fn` are
referenced by module path (they are installed in the project's image), so TFX has no user module file
to package into a wheel and upload to the pipeline root.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlpipe.errors import MlpipeError
from pipeline.cloud_config import CloudConfig
from pipeline.configs import PipelineConfig

log = logging.getLogger(__name__)


class CloudError(MlpipeError):
    """Google Cloud refused a request or no credentials were found; the message says which."""


@dataclass(frozen=True)
class CompiledPipeline:
    path: Path
    size_bytes: int
    tasks: tuple[str, ...]  # DAG task ids, sorted
    pipeline_root: str


def compile_vertex(cfg: PipelineConfig, output: Path) -> CompiledPipeline:
    """Write the PipelineJob JSON for `cfg` (which must be a vertex config) to `output`."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kv2

    from pipeline.pipeline import create_pipeline

    if cfg.cloud is None:
        raise ValueError("compile_vertex needs a vertex config (PipelineConfig.on_vertex())")
    output = output.absolute()
    runner = kv2.KubeflowV2DagRunner(
        config=kv2.KubeflowV2DagRunnerConfig(display_name=cfg.pipeline_name, default_image=cfg.cloud.image),
        output_dir=str(output.parent),
        output_filename=output.name,
    )
    pipeline = create_pipeline(cfg)
    runner.run(pipeline)
    job = json.loads(output.read_text())
    tasks = tuple(sorted(job["pipelineSpec"]["root"]["dag"]["tasks"]))
    root = job["runtimeConfig"]["gcsOutputDirectory"]
    log.info("compiled %d tasks to %s (pipeline root %s)", len(tasks), output, root)
    return CompiledPipeline(output, output.stat().st_size, tasks, root)


def submit(cloud: CloudConfig, template: Path, pipeline_name: str, enable_cache: bool,
           parameter_values: Callable[[], dict[str, str]] | None = None) -> str:
    """Start a PipelineJob from `template` without waiting for it; returns its resource name.
    `parameter_values` is called once credentials are found (it may query BigQuery: the data
    fingerprint)."""
    import google.auth
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    # Credentials first: aiplatform would otherwise fail later with a long, nested traceback.
    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except auth_exc.DefaultCredentialsError:
        raise CloudError(
            f"no Google Cloud credentials found; run `gcloud auth application-default login` or set "
            f"GOOGLE_APPLICATION_CREDENTIALS, then submit again (the pipeline is compiled at {template})"
        ) from None
    try:
        values = parameter_values() if parameter_values else {}
        job = pipeline_job(cloud, template, pipeline_name, enable_cache, credentials, values)
        job.submit(service_account=cloud.service_account or None)
    except (auth_exc.GoogleAuthError, gexc.GoogleAPIError) as e:
        raise CloudError(f"Vertex AI refused the pipeline job: {_first_line(e)}") from None
    log.info("submitted %s", job.resource_name)
    return job.resource_name


def pipeline_job(cloud: CloudConfig, template: Path, pipeline_name: str, enable_cache: bool, credentials,
                 parameter_values: dict[str, str]):
    """The `aiplatform.PipelineJob` that `submit` starts (built offline: nothing is sent here)."""
    from google.cloud import aiplatform

    return aiplatform.PipelineJob(
        display_name=pipeline_name,
        template_path=str(template),
        pipeline_root=cloud.pipeline_root(pipeline_name),
        project=cloud.project,
        location=cloud.region,
        credentials=credentials,
        enable_caching=enable_cache,
        parameter_values=parameter_values,
    )


def console_url(resource_name: str) -> str:
    """`projects/P/locations/R/pipelineJobs/J` → its page in the Cloud console."""
    parts = resource_name.split("/")
    project, region, job = parts[1], parts[3], parts[5]
    return f"https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{job}?project={project}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
