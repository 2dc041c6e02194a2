"""The data fingerprint is computed from table contents by the emulator, not from table metadata."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mlpipe.bigquery.client import bq_client
from mlpipe.bigquery.fingerprint import Column, fingerprint_sql, table_fingerprint
from mlpipe.bigquery.load import ARROW_SCHEMA, ensure_dataset, load_table
from mlpipe.errors import NotFoundError
from pipeline.configs import PipelineConfig
from pipeline.local_run import source_fingerprint

ROWS = 40


def _rows(n: int = ROWS, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "key": np.arange(n, dtype=np.int64),
        "label": rng.integers(0, 10, n).astype(np.int64),
        "image": rng.integers(0, 256, (n, 784)).astype(np.int64),
    }


def _arrow(rows: dict[str, np.ndarray], order=None) -> pa.Table:
    order = np.arange(len(rows["key"])) if order is None else np.asarray(order)
    images = rows["image"][order]
    offsets = np.arange(0, (len(order) + 1) * 784, 784, dtype=np.int32)
    return pa.Table.from_arrays(
        [pa.array(rows["key"][order]), pa.array(rows["label"][order]),
         pa.ListArray.from_arrays(pa.array(offsets), pa.array(images.reshape(-1)))],
        schema=ARROW_SCHEMA,
    )


@pytest.fixture(scope="module")
def fp_settings(bq_settings):
    settings = bq_settings.replace(dataset="fingerprint_it")
    ensure_dataset(settings)
    return settings


def _fp(settings, table: str = "valid", where: str | None = None) -> str:
    return table_fingerprint(bq_client(settings), settings.table_id(table), where)


def test_same_rows_in_any_order_same_fingerprint(fp_settings):
    rows = _rows()
    load_table(fp_settings, "valid", _arrow(rows))
    first = _fp(fp_settings)
    assert first.startswith(f"rows={ROWS};")
    load_table(fp_settings, "valid", _arrow(rows, order=np.random.default_rng(1).permutation(ROWS)))
    assert _fp(fp_settings) == first


@pytest.mark.parametrize("change", ["label", "pixel", "swap_pixels", "duplicate_row"])
def test_any_content_change_with_the_same_row_count_changes_it(fp_settings, change):
    rows = _rows()
    rows["image"][3, [10, 11]] = [5, 9]
    load_table(fp_settings, "valid", _arrow(rows))
    before = _fp(fp_settings)
    changed = {k: v.copy() for k, v in rows.items()}
    if change == "label":
        changed["label"][7] = (changed["label"][7] + 1) % 10
    elif change == "pixel":
        changed["image"][3, 400] ^= 1
    elif change == "swap_pixels":
        changed["image"][3, [10, 11]] = [9, 5]
    elif change == "duplicate_row":  # rows 5 and 6 both become row 5: same count, row 6 gone
        for k in changed:
            changed[k][6] = changed[k][5]
    load_table(fp_settings, "valid", _arrow(changed))
    assert _fp(fp_settings) != before


def test_where_limits_the_rows_hashed(fp_settings):
    rows = _rows()
    load_table(fp_settings, "valid", _arrow(rows))
    head = _fp(fp_settings, where="key < 10")
    assert head.startswith("rows=10;")
    rows["label"][30] = (rows["label"][30] + 1) % 10  # outside the slice
    load_table(fp_settings, "valid", _arrow(rows))
    assert _fp(fp_settings, where="key < 10") == head


def test_source_fingerprint_sees_a_reload_with_one_label_changed(fp_settings):
    """The issue's case: `mnist.valid` reloaded (WRITE_TRUNCATE, same row count, one label changed)
    must invalidate ExampleGen; table metadata (modified time, numRows) did not change."""
    for table in ("train", "test"):
        load_table(fp_settings, table, _arrow(_rows(seed=2)))
    rows = _rows()
    load_table(fp_settings, "valid", _arrow(rows))
    cfg = PipelineConfig.for_profile(fp_settings, "quick")
    before = source_fingerprint(cfg)
    rows["label"][0] = (rows["label"][0] + 1) % 10
    load_table(fp_settings, "valid", _arrow(rows))
    assert source_fingerprint(cfg) != before


def test_missing_table_is_named(fp_settings):
    with pytest.raises(NotFoundError, match="fingerprint_it.nope does not exist"):
        _fp(fp_settings, "nope")


def test_sql_is_one_query_over_the_given_columns():
    sql = fingerprint_sql("p.d.t", [Column("key", "INTEGER", "REQUIRED"), ("image", "INT64", "REPEATED")],
                          where="key < 3")
    assert sql.count("FROM `p.d.t`") == 1 and sql.endswith("WHERE key < 3)")
    assert "`key`" in sql and "UNNEST(`image`)" in sql
    with pytest.raises(ValueError):
        fingerprint_sql("p.d.t", [])
