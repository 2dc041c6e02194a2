"""The BigQuery queries behind the ExampleGen splits, written once for both runners.

Each split reads its frozen MNIST table and, when the pipeline learns from feedback, the labelled rows
of `DATASET.feedback` that fall in that split. A feedback row's split is fixed by a fingerprint of its
id (80 % train, 10 % eval, 10 % test), so it never moves between splits from one run to the next and
the test rows are never trained on. Every row carries `source` (contract.SOURCE_*), which the Evaluator
slices on.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlpipe import contract

# ExampleGen split name → BigQuery table. `eval` drives AdaNet's candidate selection; `test` is
# only ever seen by the Evaluator.
SPLIT_TABLES: dict[str, str] = {"train": "train", "eval": "valid", "test": "test"}
# Feedback split by FARM_FINGERPRINT(feedback_id) mod 10.
FEEDBACK_BUCKETS: dict[str, tuple[int, ...]] = {"train": (0, 1, 2, 3, 4, 5, 6, 7), "eval": (8,), "test": (9,)}
# Feedback rows get keys above every MNIST key (the key only names a row; it is not a feature).
FEEDBACK_KEY_BASE = 1_000_000_000


@dataclass(frozen=True)
class SplitQuery:
    split: str
    table: str  # fully qualified project.dataset.table of the MNIST part
    sql: str
    where: str | None = None  # the rows of `table` the query reads (None: all)
    feedback_table: str | None = None  # fully qualified, when the split also reads feedback

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,) + ((self.feedback_table,) if self.feedback_table else ())


def feedback_bucket_sql(column: str = "feedback_id") -> str:
    return f"MOD(ABS(FARM_FINGERPRINT({column})), 10)"


def split_queries(project: str, dataset: str, row_limits: dict[str, int] | None = None,
                  feedback: bool = False) -> list[SplitQuery]:
    """One query per split; `row_limits` keeps the first N keys of the MNIST tables (deterministic
    slices for tests); `feedback` adds the split's share of DATASET.feedback."""
    queries = []
    feedback_id = f"{project}.{dataset}.{contract.FEEDBACK_TABLE}"
    for split, table in SPLIT_TABLES.items():
        table_id = f"{project}.{dataset}.{table}"
        sql = (f"SELECT key, label, image, {contract.SOURCE_MNIST} AS {contract.SOURCE_KEY} "
               f"FROM `{table_id}`")
        limit = (row_limits or {}).get(split)
        where = None if limit is None else f"key < {int(limit)}"
        if where:
            sql += f" WHERE {where}"
        if feedback:
            buckets = ", ".join(str(b) for b in FEEDBACK_BUCKETS[split])
            sql += (f" UNION ALL SELECT {FEEDBACK_KEY_BASE} + MOD(ABS(FARM_FINGERPRINT(feedback_id)), "
                    f"{FEEDBACK_KEY_BASE}) AS key, label, image, {contract.SOURCE_FEEDBACK} AS "
                    f"{contract.SOURCE_KEY} FROM `{feedback_id}` WHERE {feedback_bucket_sql()} IN ({buckets})")
        queries.append(SplitQuery(split, table_id, sql, where, feedback_id if feedback else None))
    return queries


def feedback_split_counts_sql(project: str, dataset: str) -> str:
    """Rows of DATASET.feedback per split, and their time range (for the run's summary and lineage)."""
    cases = " ".join(f"WHEN {feedback_bucket_sql()} IN ({', '.join(map(str, b))}) THEN '{s}'"
                     for s, b in FEEDBACK_BUCKETS.items())
    return (f"SELECT CASE {cases} END AS split, COUNT(*) AS n, MIN(time) AS first, MAX(time) AS last "
            f"FROM `{project}.{dataset}.{contract.FEEDBACK_TABLE}` GROUP BY split")
