"""Load MNIST into BigQuery: one table per split, `key INT64, label INT64, image INT64 REPEATED`.

Path: Parquet file → `load_table_from_file` with WRITE_TRUNCATE. A load job is all-or-nothing and
replaces the table atomically, so re-running never duplicates rows and a failed load leaves the old
table as it was. Parquet is also the fastest path on the emulator (3 s for 70k rows vs 36 s streaming).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core import exceptions as gexc
from tqdm import tqdm

from mlpipe.bigquery.client import bq_client, query_rows
from mlpipe.config import Settings
from mlpipe.contract import IMAGE_PIXELS
from mlpipe.data.mnist_source import SPLITS, Split, load_mnist
from mlpipe.errors import DataIntegrityError, UsageError

log = logging.getLogger(__name__)

ARROW_SCHEMA = pa.schema(
    [
        pa.field("key", pa.int64(), nullable=False),
        pa.field("label", pa.int64(), nullable=False),
        pa.field("image", pa.list_(pa.field("item", pa.int64(), nullable=False)), nullable=False),
    ]
)


def bq_schema():
    from google.cloud import bigquery

    return [
        bigquery.SchemaField("key", "INT64", mode="REQUIRED"),
        bigquery.SchemaField("label", "INT64", mode="REQUIRED"),
        bigquery.SchemaField("image", "INT64", mode="REPEATED"),
    ]


@dataclass(frozen=True)
class LoadResult:
    table: str
    rows: int
    seconds: float


def split_to_arrow(split: Split, limit: int | None = None) -> pa.Table:
    n = len(split) if limit is None else min(limit, len(split))
    images = split.images[:n].astype(np.int64).reshape(-1)
    offsets = np.arange(0, (n + 1) * IMAGE_PIXELS, IMAGE_PIXELS, dtype=np.int32)
    image_col = pa.ListArray.from_arrays(pa.array(offsets), pa.array(images))
    return pa.Table.from_arrays(
        [pa.array(np.arange(n, dtype=np.int64)), pa.array(split.labels[:n]), image_col],
        schema=ARROW_SCHEMA,
    )


def load_table(settings: Settings, table: str, data: pa.Table, client=None) -> LoadResult:
    """Replace `dataset.table` with `data` in one load job; verify the row count afterwards."""
    from google.cloud import bigquery

    client = client or bq_client(settings)
    started = time.perf_counter()
    job_config = bigquery.LoadJobConfig(
        schema=bq_schema(),
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
    )
    # Without list inference real BigQuery sees Parquet's list wrapper as a nested record.
    parquet_options = bigquery.ParquetOptions()
    parquet_options.enable_list_inference = True
    job_config.parquet_options = parquet_options
    with tempfile.TemporaryDirectory(prefix="mlpipe-load-") as tmp:
        path = Path(tmp) / f"{table}.parquet"
        pq.write_table(data, path, compression="snappy")
        size = path.stat().st_size
        with open(path, "rb") as raw, tqdm.wrapattr(
            raw, "read", total=size, desc=f"upload {table}", unit="B", unit_scale=True, leave=False
        ) as fh:
            job = client.load_table_from_file(
                fh, settings.table_id(table), job_config=job_config, size=size, rewind=True
            )
        try:
            job.result()
        except gexc.GoogleAPICallError as e:
            raise DataIntegrityError(f"loading {settings.table_id(table)} failed: {e}") from None
    count = query_rows(settings, f"SELECT COUNT(*) AS n FROM `{settings.table_id(table)}`", client)[0]["n"]
    if count != data.num_rows:
        raise DataIntegrityError(
            f"{settings.table_id(table)} has {count} rows after the load, expected {data.num_rows}"
        )
    return LoadResult(settings.table_id(table), count, time.perf_counter() - started)


def ensure_dataset(settings: Settings, client=None) -> bool:
    """Create `project.dataset` if it does not exist; True if it was created."""
    from google.cloud import bigquery

    client = client or bq_client(settings)
    dataset_id = f"{settings.project}.{settings.dataset}"
    try:
        client.get_dataset(dataset_id)
        return False
    except gexc.NotFound:
        pass
    dataset = bigquery.Dataset(dataset_id)
    dataset.location = settings.bq_location
    client.create_dataset(dataset, exists_ok=True)
    log.info("created dataset %s", dataset_id)
    return True


def load_mnist_tables(
    settings: Settings, limit: int | None = None, splits: tuple[str, ...] = SPLITS
) -> list[LoadResult]:
    """Load the requested splits (each capped at `limit` rows) into `settings.dataset`."""
    if limit is not None and limit <= 0:
        raise UsageError(f"--limit must be a positive number of rows, not {limit}")
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise UsageError(f"unknown split(s) {sorted(unknown)}; choose from {list(SPLITS)}")
    client = bq_client(settings)
    ensure_dataset(settings, client)
    data = load_mnist()
    results = []
    for name in tqdm(splits, desc="load MNIST → BigQuery", unit="table"):
        result = load_table(settings, name, split_to_arrow(data[name], limit), client)
        log.info("loaded %s: %d rows in %.1fs", result.table, result.rows, result.seconds)
        results.append(result)
    return results


def table_counts(settings: Settings, tables: tuple[str, ...] = SPLITS, client=None) -> dict[str, int]:
    client = client or bq_client(settings)
    sql = " UNION ALL ".join(
        f"SELECT '{t}' AS t, COUNT(*) AS n FROM `{settings.table_id(t)}`" for t in tables
    )
    return {r["t"]: r["n"] for r in query_rows(settings, sql, client)}


def label_histograms(
    settings: Settings, tables: tuple[str, ...] = SPLITS, client=None
) -> dict[str, dict[int, int]]:
    client = client or bq_client(settings)
    sql = " UNION ALL ".join(
        f"SELECT '{t}' AS t, label, COUNT(*) AS n FROM `{settings.table_id(t)}` GROUP BY label"
        for t in tables
    )
    out: dict[str, dict[int, int]] = {t: {} for t in tables}
    for r in query_rows(settings, sql, client):
        out[r["t"]][int(r["label"])] = int(r["n"])
    return {t: dict(sorted(h.items())) for t, h in out.items()}


def fingerprint_sql(settings: Settings, table: str) -> str:
    return (
        "SELECT COUNT(*) AS n, SUM(label) AS labels, "
        "SUM((SELECT SUM(p) FROM UNNEST(image) AS p)) AS pixels, "
        "MIN(ARRAY_LENGTH(image)) AS min_len, MAX(ARRAY_LENGTH(image)) AS max_len "
        f"FROM `{settings.table_id(table)}`"
    )


def expected_fingerprint(split: Split, limit: int | None = None) -> dict[str, int]:
    n = len(split) if limit is None else min(limit, len(split))
    return {
        "n": n,
        "labels": int(split.labels[:n].sum()),
        "pixels": int(split.images[:n].astype(np.int64).sum()),
        "min_len": IMAGE_PIXELS,
        "max_len": IMAGE_PIXELS,
    }


def tables_intact(
    settings: Settings, limit: int | None = None, splits: tuple[str, ...] = SPLITS, client=None
) -> list[str]:
    """Splits whose table is missing or differs from the source (counts, label and pixel sums)."""
    from mlpipe.bigquery.client import table_exists

    client = client or bq_client(settings)
    data = load_mnist()
    stale = []
    for name in splits:
        if not table_exists(settings, name, client):
            stale.append(name)
            continue
        got = query_rows(settings, fingerprint_sql(settings, name), client)[0]
        if {k: int(v or 0) for k, v in got.items()} != expected_fingerprint(data[name], limit):
            stale.append(name)
    return stale
