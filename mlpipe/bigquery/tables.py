"""Create a table if missing and add the columns a newer schema has (BigQuery only adds NULLABLE or
REPEATED columns), so a state directory from before a schema change keeps working."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from mlpipe.config import Settings

Column = tuple[str, str, str]  # name, type, mode
T = TypeVar("T")
# Two writers changing one dataset at once: the emulator answers "Failed to commit DuckLake
# transaction", BigQuery "Could not serialize access to table … due to concurrent update". Both are
# 400s that succeed when tried again.
_CONFLICT_MARKERS = ("failed to commit", "concurrent update")


def is_conflict(error: Exception) -> bool:
    text = str(getattr(error, "message", "") or error).lower()
    return any(m in text for m in _CONFLICT_MARKERS)


def retry_conflicts(fn: Callable[[], T], attempts: int = 5, pause_s: float = 0.2) -> T:
    """`fn()`, tried again (up to `attempts` times) while it fails with a concurrent-write conflict."""
    from google.api_core import exceptions as gexc

    for attempt in range(attempts):
        try:
            return fn()
        except (gexc.BadRequest, gexc.Conflict) as e:
            if not is_conflict(e) or attempt == attempts - 1:
                raise
            time.sleep(pause_s * (attempt + 1))
    raise AssertionError("unreachable")


def ensure_table(client, settings: Settings, table: str, schema: Sequence[Column], retry=None,
                 timeout: float | None = None) -> None:
    retry_conflicts(lambda: _ensure_table(client, settings, table, schema, retry, timeout))


def _ensure_table(client, settings: Settings, table: str, schema: Sequence[Column], retry=None,
                  timeout: float | None = None) -> None:
    from google.cloud import bigquery

    kw = {"retry": retry, "timeout": timeout} if retry is not None else {"timeout": timeout}
    dataset = bigquery.Dataset(f"{settings.project}.{settings.dataset}")
    dataset.location = settings.bq_location
    client.create_dataset(dataset, exists_ok=True, **kw)
    fields = [bigquery.SchemaField(n, t, mode=m) for n, t, m in schema]
    existing = client.create_table(bigquery.Table(settings.table_id(table), schema=fields), exists_ok=True, **kw)
    have = {f.name for f in existing.schema}
    missing = [f for f in fields if f.name not in have]
    if missing:
        existing.schema = [*existing.schema, *missing]
        client.update_table(existing, ["schema"], **kw)
