"""What the console reads, from the same sources as the CLI: ML Metadata (mlpipe.metadata), the registry
(mlpipe.registry), BigQuery (mlpipe.bigquery) and the prediction log table.

Each reader returns plain values or raises an MlpipeError with a message for the user; the pages turn
"no store yet" and "BigQuery is down" into empty states. Finished runs never change, so their records
are kept; an unfinished run is read again on every request.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mlpipe.config import Settings
from mlpipe.contract import NUM_CLASSES, SEARCH_REPORT_DIR, SEARCH_REPORT_FILE
from mlpipe.errors import MlpipeError, NotFoundError, ServiceUnavailable, UsageError
from mlpipe.registry import Registry, VersionInfo, registry_for

log = logging.getLogger(__name__)

BQ_HEALTH_TTL_S = 5.0
PREDICTION_ROWS = 50_000  # the newest rows of the prediction log the serving page reads
FILE_LIST_LIMIT = 200
TABLES = ("train", "valid", "test")


@dataclass
class Sources:
    settings: Settings
    metadata_path: Path
    registry: Registry = field(init=False)
    _runs: dict[str, Any] = field(default_factory=dict, init=False)
    _run_list: tuple[Any, list] = field(default=(None, []), init=False)
    _bq_checked: tuple[float, str | None] = field(default=(0.0, None), init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.registry = registry_for(self.settings)

    # ---- ML Metadata ------------------------------------------------------------------------------

    def graph(self):
        """A fresh read-only view of the store (runs may have been added since the last request)."""
        from mlpipe.metadata.graph import MetadataGraph

        return MetadataGraph.open(self.metadata_path, self.settings.pipeline_name)

    def runs(self, graph) -> list:
        """Every run, newest first; finished runs' records come from the cache, and the whole list
        while the store's file is unchanged (same size and modification time) and every run finished."""
        from mlpipe.metadata.runs import run_record

        key = self._store_key()
        cached_key, cached = self._run_list
        if key is not None and key == cached_key:
            return cached
        out = []
        for run_id in reversed(graph.run_ids()):
            record = self._runs.get(run_id)
            if record is None:
                record = run_record(graph, run_id)
                if record.status in ("complete", "failed"):
                    with self._lock:
                        self._runs[run_id] = record
            out.append(record)
        if all(r.status in ("complete", "failed") for r in out):
            self._run_list = (key, out)
        return out

    def _store_key(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.metadata_path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def run(self, graph, run_id: str):
        from mlpipe.metadata.runs import find_run, run_record

        run_id = find_run(graph, run_id)
        return self._runs.get(run_id) or run_record(graph, run_id)

    # ---- registry ---------------------------------------------------------------------------------

    def versions(self) -> list[VersionInfo]:
        """Newest first; [] when the model has no registry yet."""
        if not self.registry.exists():
            return []
        return list(reversed(self.registry.list_versions()))

    def saved_model_dir(self, info: VersionInfo) -> Path:
        return info.saved_model_dir if info.is_local else self.registry.local_saved_model(info)

    def search_report(self, info: VersionInfo) -> dict:
        path = self.saved_model_dir(info) / SEARCH_REPORT_DIR / SEARCH_REPORT_FILE
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def plots(self, info: VersionInfo) -> list[str]:
        folder = self.saved_model_dir(info) / SEARCH_REPORT_DIR
        return sorted(p.name for p in folder.glob("*.png")) if folder.is_dir() else []

    def plot_file(self, info: VersionInfo, name: str) -> Path:
        """One of the version's plots, by bare file name (no directories)."""
        if name not in self.plots(info):
            raise NotFoundError(f"{info.name} has no plot {name[:80]!r}")
        return self.saved_model_dir(info) / SEARCH_REPORT_DIR / name

    # ---- BigQuery ---------------------------------------------------------------------------------

    def bq_problem(self) -> str | None:
        """None when BigQuery answers, else the sentence to show (checked at most every few seconds)."""
        if self.settings.bq_target == "cloud":
            return None
        checked_at, problem = self._bq_checked
        if time.monotonic() - checked_at < BQ_HEALTH_TTL_S:
            return problem
        from mlpipe.bigquery.service import is_healthy

        problem = None if is_healthy(self.settings, timeout=1.0) else (
            f"BigQuery is not reachable at {self.settings.bq_endpoint}. Start the local service with "
            "`mlpipe bq start` (or `make bq-start`), then reload this page.")
        self._bq_checked = (time.monotonic(), problem)
        return problem

    def _client(self):
        problem = self.bq_problem()
        if problem:
            raise ServiceUnavailable(problem)
        from mlpipe.bigquery.client import bq_client

        return bq_client(self.settings, check=False)

    def tables(self) -> list[dict[str, Any]]:
        """The dataset's tables: name, rows, last modified (data freshness)."""
        from google.api_core import exceptions as gexc

        client = self._client()
        try:
            found = []
            for t in client.list_tables(f"{self.settings.project}.{self.settings.dataset}"):
                full = client.get_table(t)
                found.append({"name": t.table_id, "id": self.settings.table_id(t.table_id),
                              "rows": full.num_rows, "modified": full.modified})
        except gexc.NotFound:
            return []
        except gexc.GoogleAPICallError as e:
            raise ServiceUnavailable(f"BigQuery could not list {self.settings.dataset}: {_short(e)}") from None
        return sorted(found, key=lambda t: t["name"])

    def table(self, name: str) -> dict[str, Any]:
        """One table of the dataset: rows, schema, label histogram (when it has a label column)."""
        from google.api_core import exceptions as gexc

        from mlpipe.bigquery.client import query_rows

        short = self._table_name(name)
        client = self._client()
        try:
            t = client.get_table(self.settings.table_id(short))
        except gexc.NotFound:
            raise NotFoundError(f"table {self.settings.table_id(short)} does not exist") from None
        schema = [{"name": f.name, "type": f.field_type, "mode": f.mode} for f in t.schema]
        histogram: dict[int, int] = {}
        if any(f["name"] == "label" for f in schema):
            rows = query_rows(self.settings, f"SELECT label, COUNT(*) AS n FROM `{t.project}.{t.dataset_id}."
                              f"{t.table_id}` GROUP BY label", client)
            histogram = {int(r["label"]): int(r["n"]) for r in rows if r["label"] is not None}
        return {"name": short, "id": self.settings.table_id(short), "rows": t.num_rows,
                "modified": t.modified, "schema": schema, "histogram": histogram}

    def label_histograms(self, names: list[str]) -> dict[str, dict[int, int]]:
        from mlpipe.bigquery.load import label_histograms

        return label_histograms(self.settings, tuple(names), self._client())

    def _table_name(self, name: str) -> str:
        """`train`, `mnist.train` or `project.mnist.train` → `train` (this project and dataset only)."""
        from mlpipe.registry import validate_name

        parts = name.split(".")
        if len(parts) > 3:
            raise UsageError(f"{name[:120]!r} is not a table name")
        if (len(parts) == 3 and parts[0] != self.settings.project) or (
                len(parts) >= 2 and parts[-2] != self.settings.dataset):
            raise NotFoundError(f"table {name[:120]!r} is not in {self.settings.project}.{self.settings.dataset}")
        return validate_name("table", parts[-1])

    def predictions(self, hours: float | None = None) -> list[dict[str, Any]]:
        """The newest rows of the prediction log for this model ([] when nothing was logged yet)."""
        from google.api_core import exceptions as gexc

        from mlpipe.bigquery.client import query_rows
        from mlpipe.serving.prediction_log import TABLE

        client = self._client()
        where = f"model = '{self.settings.model_name}'"
        if hours is not None:
            since = datetime.now(timezone.utc) - timedelta(hours=hours)
            where += f" AND time >= TIMESTAMP('{since.strftime('%Y-%m-%d %H:%M:%S')}')"
        sql = (f"SELECT time, version, predicted_class, confidence, latency_ms, request_id "
               f"FROM `{self.settings.table_id(TABLE)}` WHERE {where} ORDER BY time DESC LIMIT {PREDICTION_ROWS}")
        try:
            return query_rows(self.settings, sql, client)
        except NotFoundError:
            return []
        except gexc.GoogleAPICallError as e:
            raise ServiceUnavailable(f"BigQuery could not read the prediction log: {_short(e)}") from None


# ---- summaries --------------------------------------------------------------------------------------

def serving_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per version: requests, instances, latency percentiles, class distribution, mean confidence."""
    by_version: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_version.setdefault(str(r["version"]), []).append(r)
    total = len(rows) or 1
    out = []
    for version, mine in sorted(by_version.items()):
        latencies = sorted(float(r["latency_ms"]) for r in mine)
        classes = Counter(int(r["predicted_class"]) for r in mine)
        out.append({
            "version": version,
            "instances": len(mine),
            "requests": len({r["request_id"] for r in mine}),
            "share": len(mine) / total,
            "p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "p99": percentile(latencies, 99),
            "classes": [classes.get(c, 0) for c in range(NUM_CLASSES)],
            "confidence": statistics.fmean(float(r["confidence"]) for r in mine),
            "last": max(r["time"] for r in mine),
        })
    return out


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def list_files(root: str, limit: int = FILE_LIST_LIMIT) -> list[tuple[str, int]]:
    """(relative path, size) of the files under an artifact's directory (or the file itself)."""
    if os.path.isfile(root):
        return [(os.path.basename(root), os.path.getsize(root))]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            found.append((os.path.relpath(path, root), os.path.getsize(path)))
            if len(found) >= limit:
                return found
    return found


def artifact_file(uri: str, relative: str) -> Path:
    """The file `relative` under the artifact directory `uri`, refusing anything that resolves outside it
    (`..`, absolute paths, symlinks out)."""
    if "://" in uri:
        raise NotFoundError("files of remote artifacts are not served by the console")
    base = os.path.realpath(uri)
    if os.path.isfile(base):
        if relative != os.path.basename(base):
            raise NotFoundError(f"artifact has no file {relative[:120]!r}")
        return Path(base)
    target = os.path.realpath(os.path.join(base, relative))
    if os.path.commonpath([base, target]) != base or target == base:
        raise NotFoundError(f"{relative[:120]!r} is not a file of this artifact")
    if not os.path.isfile(target):
        raise NotFoundError(f"artifact has no file {relative[:120]!r}")
    return Path(target)


def _short(e: Exception) -> str:
    text = getattr(e, "message", None) or str(e)
    return (text.splitlines() or [type(e).__name__])[0][:200]


def safe(fn, *args, **kwargs) -> tuple[Any, str | None]:
    """(result, None), or (None, the error's message) for an MlpipeError: a section's empty state."""
    try:
        return fn(*args, **kwargs), None
    except MlpipeError as e:
        return None, str(e)
