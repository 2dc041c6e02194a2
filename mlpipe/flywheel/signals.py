"""Gather what the flywheel decides on: the registry's rollout, new labels, time since the last run,
and each version's online accuracy (served predictions joined with the labels users sent later)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from mlpipe import contract
from mlpipe.bigquery.client import query_rows, table_exists
from mlpipe.config import Settings
from mlpipe.flywheel.policy import Online, Signals
from mlpipe.registry import Registry

log = logging.getLogger(__name__)

PREDICTIONS_TABLE = "predictions"


def last_run_started(settings: Settings) -> float | None:
    """Epoch seconds when the newest pipeline run started, None if it never ran."""
    if not settings.metadata_path.exists():
        return None
    from mlpipe.metadata.graph import MetadataGraph

    graph = MetadataGraph.open(settings.metadata_path, settings.pipeline_name)
    runs = graph.run_ids()
    if not runs:
        return None
    return min(e.started_ms for e in graph.run_executions(runs[-1])) / 1000.0


def new_labels_since(settings: Settings, since_epoch: float | None) -> int:
    if not table_exists(settings, contract.FEEDBACK_TABLE):
        return 0
    where = f" WHERE time > TIMESTAMP_SECONDS({int(since_epoch)})" if since_epoch else ""
    rows = query_rows(settings, f"SELECT COUNT(*) AS n FROM `{settings.table_id(contract.FEEDBACK_TABLE)}`{where}")
    return int(rows[0]["n"])


def online_accuracy(settings: Settings, model: str, since: str | None = None) -> dict[str, Online]:
    """Per version: predictions it returned (served or canary) since `since` (RFC 3339) that users
    later labelled, and how many it got right."""
    if not (table_exists(settings, contract.FEEDBACK_TABLE) and table_exists(settings, PREDICTIONS_TABLE)):
        return {}
    window = f" AND p.time >= TIMESTAMP('{since}')" if since else ""
    sql = (f"SELECT p.version AS version, COUNT(*) AS labelled, "
           f"COUNTIF(p.predicted_class = f.label) AS correct "
           f"FROM `{settings.table_id(PREDICTIONS_TABLE)}` p "
           f"JOIN `{settings.table_id(contract.FEEDBACK_TABLE)}` f ON p.prediction_id = f.prediction_id "
           f"WHERE p.model = '{model}' AND COALESCE(p.role, 'served') != 'shadow'{window} "
           f"GROUP BY p.version")
    return {r["version"]: Online(int(r["labelled"]), int(r["correct"])) for r in query_rows(settings, sql)}


def monitored_drift(settings: Settings, since_epoch: float | None) -> tuple[bool | None, str]:
    """`mlpipe monitor` on what the default served since the last run: (drift?, which features).
    (None, why) when it cannot judge (too little traffic, no prediction log yet)."""
    from datetime import datetime, timezone

    from mlpipe.errors import MlpipeError
    from mlpipe.monitor.report import MonitorConfig, monitor

    since = datetime.fromtimestamp(since_epoch, timezone.utc) if since_epoch else None
    try:
        report, _ = monitor(settings, MonitorConfig(since=since))
    except MlpipeError as e:
        return None, str(e)
    return bool(report["drift"]), ", ".join(report["drifted_features"])


def gather(settings: Settings, registry: Registry,
           drift: Callable[[], tuple[bool | None, str]] | None = None) -> Signals:
    started = last_run_started(settings)
    if drift is None:
        def drift() -> tuple[bool | None, str]:
            return monitored_drift(settings, started)
    rollout = registry.rollout()
    since = None
    if rollout is not None:
        # The challenger is judged on the traffic since its rollout began, and so is the default.
        since = next((e.time for e in reversed(registry.audit())
                      if e.action in ("challenger", "push") and e.version == rollout.version), None)
    judging = rollout is not None and rollout.mode == "canary"  # then no retrain, so no drift needed
    if judging:
        drifted, detail = None, "not measured while a canary rolls out"
    elif registry.default_version() is None:
        drifted, detail = None, "nothing served yet"
    else:
        drifted, detail = drift()
    return Signals(
        default=registry.default_version(),
        challenger=rollout.version if rollout and rollout.mode == "canary" else None,
        new_labels=new_labels_since(settings, started),
        drift=drifted,
        drift_detail=detail,
        hours_since_last_run=None if started is None else (time.time() - started) / 3600.0,
        online=online_accuracy(settings, registry.model, since) if rollout else {},
    )
