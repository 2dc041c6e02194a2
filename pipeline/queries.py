"""The BigQuery queries behind the ExampleGen splits, written once for both runners."""

from __future__ import annotations

from dataclasses import dataclass

# ExampleGen split name → BigQuery table. `eval` drives AdaNet's candidate selection; `test` is
# only ever seen by the Evaluator.
SPLIT_TABLES: dict[str, str] = {"train": "train", "eval": "valid", "test": "test"}


@dataclass(frozen=True)
class SplitQuery:
    split: str
    table: str  # fully qualified project.dataset.table
    sql: str
    where: str | None = None  # the rows of `table` the query reads (None: all)


def split_queries(project: str, dataset: str, row_limits: dict[str, int] | None = None) -> list[SplitQuery]:
    """One query per split; `row_limits` keeps the first N keys (deterministic slices for tests)."""
    queries = []
    for split, table in SPLIT_TABLES.items():
        table_id = f"{project}.{dataset}.{table}"
        sql = f"SELECT key, label, image FROM `{table_id}`"
        limit = (row_limits or {}).get(split)
        where = None if limit is None else f"key < {int(limit)}"
        if where:
            sql += f" WHERE {where}"
        queries.append(SplitQuery(split, table_id, sql, where))
    return queries
