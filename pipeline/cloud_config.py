"""Settings of a managed run in Google Cloud, validated in one place (imports nothing heavy, so a
missing setting is reported before TFX and TensorFlow load)."""

from __future__ import annotations

from dataclasses import dataclass

from mlpipe.config import PushTarget, Settings
from mlpipe.errors import UsageError

# Where the Dockerfile puts this repository inside the image. Paths the compiled pipeline hands to
# its steps (the curated schema) must be paths in the image, not on the machine that compiles.
IMAGE_SOURCE_DIR = "/mlpipe"
IMAGE_SCHEMA_FILE = f"{IMAGE_SOURCE_DIR}/pipeline/schema/schema.pbtxt"
# Vertex AI's prebuilt TensorFlow serving container matching the TF 2.15 the models are built with.
VERTEX_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
# The machine of each model deployed to the Vertex AI endpoint (one node, always on: see README's costs).
ENDPOINT_MACHINE_TYPE = "n1-standard-2"
LOCAL_DEFAULT_PROJECT = Settings().project


@dataclass(frozen=True)
class CloudConfig:
    """Everything a managed run in Google Cloud needs, validated once; built from `Settings`."""

    project: str
    region: str
    gcs_root: str  # gs://BUCKET[/PREFIX], no trailing slash
    image: str
    dataflow_temp_location: str
    push_target: PushTarget = "vertex"
    service_account: str = ""
    dataflow_max_workers: int = 4
    dataflow_machine_type: str = "n1-standard-4"
    dataflow_disk_size_gb: int = 50
    dataflow_network: str = ""
    dataflow_subnetwork: str = ""
    trainer_machine_type: str = ""  # empty: the Trainer runs in the pipeline step's container
    vertex_keep_previous: int = 1  # deployed models kept on the endpoint besides the new one
    model_name: str = "mnist"  # registry model and Vertex endpoint display name
    vertex_serving_image: str = VERTEX_SERVING_IMAGE
    schema_file: str = IMAGE_SCHEMA_FILE

    @classmethod
    def from_settings(cls, settings: Settings) -> CloudConfig:
        """Raises one UsageError naming every missing or malformed cloud setting."""
        problems = []
        if settings.project == LOCAL_DEFAULT_PROJECT:
            problems.append("--project / MLPIPE_PROJECT (your GCP project id)")
        if not settings.region:
            problems.append("--region / MLPIPE_REGION")
        if not settings.gcs_root:
            problems.append("--gcs-root / MLPIPE_GCS_ROOT (gs://BUCKET[/PREFIX])")
        elif not settings.gcs_root.startswith("gs://"):
            problems.append(f"--gcs-root must be a gs:// URI, not {settings.gcs_root!r}")
        if not settings.image:
            problems.append("--image / MLPIPE_IMAGE (the image built from the Dockerfile)")
        temp = settings.dataflow_temp_location
        if temp and not temp.startswith("gs://"):
            problems.append(f"--dataflow-temp-location must be a gs:// URI, not {temp!r}")
        if settings.service_account and "@" not in settings.service_account:
            problems.append(f"--service-account must be an e-mail address, not {settings.service_account!r}")
        if settings.dataflow_max_workers < 1:
            problems.append("--dataflow-max-workers must be at least 1")
        if settings.dataflow_disk_size_gb < 30:
            problems.append("--dataflow-disk-size-gb must be at least 30 (the image alone is several GB)")
        if settings.vertex_keep_previous < 0:
            problems.append("--keep-previous must be 0 or more")
        if problems:
            raise UsageError("cloud settings missing or invalid: " + "; ".join(problems))
        root = settings.gcs_root.rstrip("/")
        return cls(
            project=settings.project,
            region=settings.region,
            gcs_root=root,
            image=settings.image,
            dataflow_temp_location=(temp or f"{root}/tmp").rstrip("/"),
            push_target=settings.push_target,
            service_account=settings.service_account,
            dataflow_max_workers=settings.dataflow_max_workers,
            dataflow_machine_type=settings.dataflow_machine_type,
            dataflow_disk_size_gb=settings.dataflow_disk_size_gb,
            dataflow_network=settings.dataflow_network,
            dataflow_subnetwork=settings.dataflow_subnetwork,
            trainer_machine_type=settings.trainer_machine_type,
            vertex_keep_previous=settings.vertex_keep_previous,
            model_name=settings.model_name,
        )

    @property
    def registry_root(self) -> str:
        """The bucket registry the pipeline pushes to and the Cloud Function serves from."""
        return f"{self.gcs_root}/registry"

    def pipeline_root(self, pipeline_name: str) -> str:
        return f"{self.gcs_root}/pipelines/{pipeline_name}"

    def beam_args(self) -> tuple[str, ...]:
        """Beam on Dataflow, workers in the project's image (it carries TFX, TF and this package)."""
        args = [
            "--runner=DataflowRunner",
            f"--project={self.project}",
            f"--region={self.region}",
            f"--temp_location={self.dataflow_temp_location}",
            f"--staging_location={self.gcs_root}/staging",
            f"--sdk_container_image={self.image}",
            # Custom containers need Runner v2; the SDK is in the image, so nothing is staged from PyPI.
            "--experiments=use_runner_v2",
            "--sdk_location=container",
            f"--max_num_workers={self.dataflow_max_workers}",
            f"--machine_type={self.dataflow_machine_type}",
            f"--disk_size_gb={self.dataflow_disk_size_gb}",
        ]
        if self.dataflow_network:
            args.append(f"--network={self.dataflow_network}")
        if self.dataflow_subnetwork:
            args.append(f"--subnetwork={self.dataflow_subnetwork}")
        if self.service_account:
            args.append(f"--service_account_email={self.service_account}")
        return tuple(args)
