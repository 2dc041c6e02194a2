"""A prediction table made by an older release gets the newer columns instead of rejecting rows."""

from __future__ import annotations

import pytest

from mlpipe.bigquery.client import bq_client, query_rows
from mlpipe.serving.prediction_log import SCHEMA, PredictionLogger


@pytest.mark.e2e  # the session's BigQuery emulator
def test_an_older_table_gains_the_new_columns_and_takes_rows(bq_settings, tmp_path):
    from google.cloud import bigquery

    settings = bq_settings.replace(dataset="oldlog", state_dir=tmp_path)
    client = bq_client(settings)
    client.create_dataset(bigquery.Dataset(f"{settings.project}.{settings.dataset}"), exists_ok=True)
    old = [bigquery.SchemaField(n, t, mode=m) for n, t, m in SCHEMA if n != "role"]
    client.create_table(bigquery.Table(settings.table_id("predictions"), schema=old))
    logger = PredictionLogger(settings, flush_rows=1, flush_seconds=0.1)
    logger.log("mnist", "v2", [3], [0.9], 1.5, "old-table-1", role="shadow")
    logger.close(timeout=30)
    assert (logger.sent, logger.dropped) == (1, 0)
    rows = query_rows(settings, f"SELECT version, role FROM `{settings.table_id('predictions')}`")
    assert rows == [{"version": "v2", "role": "shadow"}]
