"""Feedback becomes training data: each labelled feedback row lands in exactly one split, fixed by its
id, with `source` = feedback; the MNIST rows keep `source` = mnist; a run sees how many there are."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mlpipe import contract
from mlpipe.bigquery.client import bq_client, query_rows
from mlpipe.errors import NotFoundError
from pipeline import queries

FEEDBACK_SCHEMA = (("feedback_id", "STRING", "REQUIRED"), ("time", "TIMESTAMP", "REQUIRED"),
                   ("label", "INT64", "REQUIRED"), ("image", "INT64", "REPEATED"))


def write_feedback(settings, rows: list[dict]) -> None:
    """Rows into DATASET.feedback, the columns the pipeline reads (mlpipe.feedback owns the rest)."""
    from google.cloud import bigquery

    client = bq_client(settings)
    schema = [bigquery.SchemaField(n, t, mode=m) for n, t, m in FEEDBACK_SCHEMA]
    client.create_table(bigquery.Table(settings.table_id(contract.FEEDBACK_TABLE), schema=schema),
                        exists_ok=True)
    assert client.insert_rows_json(settings.table_id(contract.FEEDBACK_TABLE), rows) == []


def feedback_rows(images: np.ndarray, labels: np.ndarray, prefix: str = "fb") -> list[dict]:
    return [{"feedback_id": f"{prefix}-{i}", "time": f"2026-12-0{1 + i % 2}T10:00:00Z", "label": int(y),
             "image": [int(p) for p in img]} for i, (img, y) in enumerate(zip(images, labels, strict=True))]


@pytest.fixture(scope="module")
def with_feedback(bq_settings):
    from mlpipe.bigquery.load import load_mnist_tables
    from mlpipe.data.mnist_source import load_mnist

    settings = bq_settings.replace(dataset="mnist_feedback_q")
    load_mnist_tables(settings, limit=50)
    test = load_mnist()["test"]
    write_feedback(settings, feedback_rows(test.images[:300].reshape(300, -1), test.labels[:300]))
    return settings


@pytest.mark.e2e  # the session's BigQuery emulator
def test_each_feedback_row_is_in_exactly_one_split(with_feedback):
    s = with_feedback
    seen: dict[int, str] = {}
    per_split = {}
    for q in queries.split_queries(s.project, s.dataset, feedback=True):
        rows = query_rows(s, q.sql)
        mnist = [r for r in rows if r[contract.SOURCE_KEY] == contract.SOURCE_MNIST]
        fb = [r for r in rows if r[contract.SOURCE_KEY] == contract.SOURCE_FEEDBACK]
        assert len(mnist) == 50 and all(r["key"] < 50 for r in mnist)
        assert all(r["key"] >= queries.FEEDBACK_KEY_BASE for r in fb)
        for r in fb:
            assert r["key"] not in seen, "a feedback row in two splits"
            seen[r["key"]] = q.split
        per_split[q.split] = len(fb)
        assert q.tables == (f"{s.project}.{s.dataset}.{q.table.rsplit('.', 1)[1]}",
                            s.table_id(contract.FEEDBACK_TABLE))
    assert len(seen) == 300
    assert 0.7 < per_split["train"] / 300 < 0.9 and per_split["test"] > 10 and per_split["eval"] > 10
    counted = {r["split"]: r["n"] for r in query_rows(s, queries.feedback_split_counts_sql(s.project, s.dataset))}
    assert counted == per_split
    # Stable: the same rows, the same splits, every time.
    again = query_rows(s, queries.split_queries(s.project, s.dataset, feedback=True)[2].sql)
    assert sorted(r["key"] for r in again if r[contract.SOURCE_KEY]) == sorted(
        k for k, split in seen.items() if split == "test")


@pytest.mark.e2e
def test_a_run_sees_how_much_feedback_there_is(with_feedback, bq_settings):
    from pipeline.configs import PipelineConfig
    from pipeline.feedback_source import with_feedback_rows

    cfg = PipelineConfig.for_profile(with_feedback, "quick")
    found = with_feedback_rows(cfg)
    assert found.reads_feedback and found.gates_on_feedback and sum(found.feedback_rows.values()) == 300
    assert with_feedback_rows(dataclasses.replace(cfg, feedback="off")).feedback_rows is None
    empty = PipelineConfig.for_profile(bq_settings.replace(dataset="mnist_no_feedback"), "quick")
    assert with_feedback_rows(empty).feedback_rows is None  # auto: no table, no feedback
    with pytest.raises(NotFoundError, match="mlpipe feedback"):
        with_feedback_rows(dataclasses.replace(empty, feedback="on"))
