"""Submit a compiled pipeline to Vertex AI Pipelines (google-cloud-aiplatform)."""

from __future__ import annotations

import logging
from pathlib import Path

from mlpipe.cloud.config import CloudConfig
from mlpipe.errors import MlpipeError

log = logging.getLogger(__name__)


class CloudError(MlpipeError):
    """Google Cloud refused a request or no credentials were found; the message says which."""


def submit(cloud: CloudConfig, template: Path, pipeline_name: str, enable_cache: bool) -> str:
    """Start a PipelineJob from `template` without waiting for it; returns its resource name."""
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

    from google.cloud import aiplatform

    try:
        job = aiplatform.PipelineJob(
            display_name=pipeline_name,
            template_path=str(template),
            pipeline_root=cloud.pipeline_root(pipeline_name),
            project=cloud.project,
            location=cloud.region,
            credentials=credentials,
            enable_caching=enable_cache,
        )
        job.submit(service_account=cloud.service_account or None)
    except (auth_exc.GoogleAuthError, gexc.GoogleAPIError) as e:
        raise CloudError(f"Vertex AI refused the pipeline job: {_first_line(e)}") from None
    log.info("submitted %s", job.resource_name)
    return job.resource_name


def console_url(resource_name: str) -> str:
    """`projects/P/locations/R/pipelineJobs/J` → its page in the Cloud console."""
    parts = resource_name.split("/")
    project, region, job = parts[1], parts[3], parts[5]
    return f"https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{job}?project={project}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
