"""Whether a run learns from users' labels: how many rows of DATASET.feedback fall in each split."""

from __future__ import annotations

import dataclasses
import logging

from mlpipe import contract
from mlpipe.bigquery.client import query_rows, table_exists
from pipeline.configs import PipelineConfig
from pipeline.queries import FEEDBACK_BUCKETS, feedback_split_counts_sql

log = logging.getLogger(__name__)


def with_feedback_rows(cfg: PipelineConfig) -> PipelineConfig:
    """`cfg` with `feedback_rows` filled in from BigQuery (auto: only when the table has rows)."""
    if cfg.feedback == "off":
        return dataclasses.replace(cfg, feedback_rows=None)
    s = cfg.settings
    if not table_exists(s, contract.FEEDBACK_TABLE):
        if cfg.feedback == "on":
            from mlpipe.errors import NotFoundError

            raise NotFoundError(f"--feedback on, but {s.table_id(contract.FEEDBACK_TABLE)} does not exist "
                                "(`mlpipe feedback` creates it)")
        return dataclasses.replace(cfg, feedback_rows=None)
    rows = {split: 0 for split in FEEDBACK_BUCKETS}
    times = []
    for r in query_rows(s, feedback_split_counts_sql(s.project, s.dataset)):
        rows[r["split"]] = int(r["n"])
        times += [str(r["first"]), str(r["last"])]
    if cfg.feedback == "auto" and not sum(rows.values()):
        return dataclasses.replace(cfg, feedback_rows=None)
    log.info("learning from feedback: %s rows per split", rows)
    return dataclasses.replace(cfg, feedback_rows=rows, feedback_window=(min(times), max(times)) if times else None)
