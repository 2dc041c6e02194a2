"""The one typed configuration object: defaults → environment → command-line flags.

Nothing else in the project reads environment variables; everything takes a `Settings`. It also owns
the state directory's layout: every path under `state_dir` is a property here.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mlpipe.errors import UsageError

# Google Cloud project IDs (optionally domain-scoped, `example.com:my-project`) and BigQuery dataset
# names, checked where they enter so they never reach a URL or SQL unchecked.
_PROJECT_RE = re.compile(r"(?:[a-z0-9][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DATASET_RE = re.compile(r"[A-Za-z0-9_]{1,1024}")

BigQueryTarget = Literal["local", "cloud"]
# Where the cloud pipeline publishes a blessed model: the bucket registry and a Vertex AI endpoint
# ("vertex"), or the bucket registry only ("registry", served by the Cloud Function; no endpoint node).
PushTarget = Literal["vertex", "registry"]
PUSH_TARGETS = ("vertex", "registry")

REPO_ROOT = Path(__file__).resolve().parents[1]

# Environment variable → Settings field. Values are parsed with the field's type.
ENV_VARS: dict[str, str] = {
    "MLPIPE_STATE_DIR": "state_dir",
    "MLPIPE_PROJECT": "project",
    "MLPIPE_DATASET": "dataset",
    "MLPIPE_BQ_TARGET": "bq_target",
    "MLPIPE_BQ_HOST": "bq_host",
    "MLPIPE_BQ_PORT": "bq_port",
    "MLPIPE_BQ_GRPC_PORT": "bq_grpc_port",
    "MLPIPE_BQ_LOCATION": "bq_location",
    "MLPIPE_BQ_EMULATOR": "bq_emulator_bin",
    "MLPIPE_REGISTRY_ROOT": "registry_root",
    "MLPIPE_MODEL": "model_name",
    "MLPIPE_LOG_PREDICTIONS": "log_predictions",
    # `mlpipe serve`'s edge guard (mlpipe/serving/guard.py): writes need this token when it is set;
    # comma-separated Host names the server answers to (empty: any, e.g. behind Cloud Functions).
    "MLPIPE_SERVE_TOKEN": "serve_token",
    "MLPIPE_SERVE_ALLOWED_HOSTS": "serve_allowed_hosts",
    # Google Cloud: read by `mlpipe compile-vertex` / vertex_runner.py (pipeline.cloud_config.CloudConfig).
    "MLPIPE_REGION": "region",
    "MLPIPE_GCS_ROOT": "gcs_root",
    "MLPIPE_IMAGE": "image",
    "MLPIPE_DATAFLOW_TEMP_LOCATION": "dataflow_temp_location",
    "MLPIPE_DATAFLOW_MAX_WORKERS": "dataflow_max_workers",
    "MLPIPE_DATAFLOW_MACHINE_TYPE": "dataflow_machine_type",
    "MLPIPE_DATAFLOW_DISK_SIZE_GB": "dataflow_disk_size_gb",
    "MLPIPE_DATAFLOW_NETWORK": "dataflow_network",
    "MLPIPE_DATAFLOW_SUBNETWORK": "dataflow_subnetwork",
    "MLPIPE_TRAINER_MACHINE_TYPE": "trainer_machine_type",
    "MLPIPE_VERTEX_KEEP_PREVIOUS": "vertex_keep_previous",
    "MLPIPE_PUSH_TARGET": "push_target",
    "MLPIPE_SERVICE_ACCOUNT": "service_account",
}

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    """Where data lives and how to reach BigQuery.

    `bq_target="local"` talks to the emulator this project starts on `bq_host:bq_port` (REST) and
    `bq_grpc_port` (Storage Read API); `"cloud"` talks to real BigQuery with Application Default
    Credentials for `project`.
    """

    project: str = "local-project"
    dataset: str = "mnist"
    bq_target: BigQueryTarget = "local"
    bq_host: str = "127.0.0.1"
    bq_port: int = 9050
    bq_grpc_port: int = 9060
    bq_location: str = "US"
    state_dir: Path = Path(".mlpipe")
    bq_emulator_bin: Path = REPO_ROOT / ".venv-bq" / "bin" / "local-bigquery"
    # Registry location; empty means `state_dir/registry`. A string, not a Path, so that a `gs://`
    # URI keeps its double slash when a cloud storage backend is added.
    registry_root: str = ""
    model_name: str = "mnist"
    # The TFX pipeline's name: its ML Metadata context, pipeline root and store file are named after it.
    pipeline_name: str = "mnist-automl"
    # Append every served prediction to `dataset.predictions` (batched, off the request path).
    log_predictions: bool = True
    serve_token: str = dataclasses.field(default="", repr=False)  # never shown in logs or reprs
    serve_allowed_hosts: str = ""
    # ---- Google Cloud (managed runs); validated together by pipeline.cloud_config.CloudConfig, so that
    # local commands never require them.
    region: str = "us-central1"
    # gs://BUCKET[/PREFIX]: pipeline root (GCS_ROOT/pipelines/NAME) and Dataflow temp/staging files.
    gcs_root: str = ""
    # The project's container image (Dockerfile): every pipeline step and every Dataflow worker.
    image: str = ""
    dataflow_temp_location: str = ""  # empty means GCS_ROOT/tmp
    dataflow_max_workers: int = 4
    # Dataflow workers run the project's image (several GB): TFX's own Dataflow examples use 50 GB disks.
    dataflow_machine_type: str = "n1-standard-4"
    dataflow_disk_size_gb: int = 50
    dataflow_network: str = ""  # empty: the project's `default` network
    dataflow_subnetwork: str = ""  # e.g. regions/REGION/subnetworks/NAME
    # Non-empty: the Trainer runs as a Vertex AI Training custom job on this machine type; empty: in
    # the pipeline step's own container.
    trainer_machine_type: str = ""
    push_target: PushTarget = "vertex"  # see PushTarget
    # Models kept deployed on the Vertex endpoint besides the new one (at 0 % traffic, for an
    # instant rollback); older ones are undeployed.
    vertex_keep_previous: int = 1
    service_account: str = ""  # runs the pipeline and the Dataflow workers; empty = the default one

    def __post_init__(self) -> None:
        if self.bq_target not in ("local", "cloud"):
            raise UsageError(f"bq_target must be 'local' or 'cloud', not {self.bq_target!r}")
        if self.push_target not in PUSH_TARGETS:
            legacy = (" (legacy AI Platform Prediction was shut down on 2025-01-31; Vertex AI replaces it)"
                      if self.push_target == "ai_platform" else "")
            raise UsageError(f"push_target must be 'vertex' or 'registry', not {self.push_target!r}{legacy}")
        for name in ("bq_port", "bq_grpc_port"):
            port = getattr(self, name)
            if not 0 < port < 65536:
                raise UsageError(f"{name} must be a TCP port (1-65535), not {port}")
        if not self.project or not self.dataset:
            raise UsageError("project and dataset must not be empty")
        if not _PROJECT_RE.fullmatch(self.project):
            raise UsageError(
                f"invalid project {self.project[:80]!r}: a Google Cloud project ID is lowercase "
                "letters, digits and hyphens, starting with a letter (optionally DOMAIN:ID)"
            )
        if not _DATASET_RE.fullmatch(self.dataset):
            raise UsageError(
                f"invalid dataset {self.dataset[:80]!r}: use letters, digits and underscores "
                "(at most 1024)"
            )

    @property
    def bq_endpoint(self) -> str | None:
        """REST root of the local service, or None for real BigQuery."""
        if self.bq_target == "cloud":
            return None
        return f"http://{self.bq_host}:{self.bq_port}"

    @property
    def bq_grpc_endpoint(self) -> str:
        return f"{self.bq_host}:{self.bq_grpc_port}"

    # ---- the state directory's layout -----------------------------------------------------------

    @property
    def registry_location(self) -> str:
        """Where the model registry lives: `registry_root`, else `state_dir/registry`."""
        return self.registry_root or str(self.state_dir / "registry")

    @property
    def bq_data_dir(self) -> Path:
        """The local BigQuery service's tables."""
        return self.state_dir / "bigquery"

    @property
    def bq_pid_file(self) -> Path:
        return self.state_dir / "bigquery.pid"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def bq_log_file(self) -> Path:
        return self.logs_dir / "bigquery.log"

    @property
    def pipeline_root(self) -> Path:
        """TFX's pipeline root: every component's output artifacts."""
        return self.state_dir / "pipelines" / self.pipeline_name

    @property
    def metadata_path(self) -> Path:
        """The ML Metadata SQLite store of local runs."""
        return self.state_dir / "metadata" / f"{self.pipeline_name}.sqlite"

    @property
    def lineage_dir(self) -> Path:
        """Where `mlpipe lineage --format png|svg` writes its pictures unless given -o."""
        return self.state_dir / "lineage"

    @property
    def run_lock_file(self) -> Path:
        """Held (fcntl) by the one pipeline run of this state dir; says whose run it is."""
        return self.state_dir / "run.lock"

    @property
    def monitor_dir(self) -> Path:
        """Drift reports and plots written by `mlpipe monitor` (one sub-directory per run)."""
        return self.state_dir / "monitor"

    @property
    def flywheel_log(self) -> Path:
        """Every `mlpipe flywheel` decision with its reasons, one JSON line each."""
        return self.state_dir / "flywheel" / "decisions.jsonl"

    @property
    def vertex_dir(self) -> Path:
        """Where `mlpipe compile-vertex` writes the compiled pipeline by default."""
        return self.state_dir / "vertex"

    def table_id(self, table: str) -> str:
        """Fully qualified `project.dataset.table`."""
        return f"{self.project}.{self.dataset}.{table}"

    def replace(self, **changes: object) -> Settings:
        """A copy with `changes` applied; None values are ignored (unset CLI flags)."""
        given = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **_coerce(given))


def _coerce(values: Mapping[str, object]) -> dict[str, object]:
    types = {f.name: f.type for f in dataclasses.fields(Settings)}
    out: dict[str, object] = {}
    for name, value in values.items():
        if name not in types:
            raise UsageError(f"unknown setting {name!r}")
        kind = types[name]
        try:
            if kind == "int" and not isinstance(value, int):
                value = int(str(value))
            elif kind == "Path" and not isinstance(value, Path):
                value = Path(str(value))
            elif kind == "bool" and not isinstance(value, bool):
                value = _parse_bool(name, str(value))
        except ValueError:
            raise UsageError(f"setting {name} expects a number, got {value!r}") from None
        out[name] = value
    return out


def _parse_bool(name: str, text: str) -> bool:
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise UsageError(f"setting {name} expects one of {'/'.join(_TRUE + _FALSE)}, got {text!r}")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Defaults, then `MLPIPE_*` environment variables, then explicit overrides (CLI flags)."""
    env = os.environ if environ is None else environ
    from_env = {field: env[var] for var, field in ENV_VARS.items() if env.get(var)}
    return Settings().replace(**from_env).replace(**overrides)
