"""A fingerprint of a table's CONTENTS, computed by one query: row count plus order-independent checksums.

Table metadata is not a fingerprint: after a `WRITE_TRUNCATE` load the emulator keeps the table's
`modified` time, and after single-row `UPDATE`s its `numRows` drifts from `COUNT(*)`. So the rows
themselves are hashed, inside BigQuery (nothing is downloaded):

- each row → `FARM_FINGERPRINT` of its columns joined into one string; a REPEATED INT64 column (the
  image) enters as its length and two position-weighted sums of its values, which the emulator computes
  ~5× faster than a JSON rendering of the array (any single-value or two-value change alters them);
- the rows → `COUNT(*)`, `BIT_XOR` and a modular `SUM` of the row hashes: independent of row order,
  and a duplicated row does not cancel itself out (the count and the sum see it).

The same SQL runs on real BigQuery and on the local emulator. It is a checksum for cache invalidation,
not a cryptographic digest.

Public API (small on purpose; the cloud pipeline reuses it):

- `fingerprint_sql(table, columns, where=None) -> str`: the query, a pure function.
- `table_fingerprint(client, table, where=None) -> str`: run it, e.g. `"rows=3000;xor=…;sum=…"`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from mlpipe.errors import NotFoundError

# A prime below 2**31: the row hashes are reduced modulo it before summing, so the SUM cannot overflow
# INT64 for any table BigQuery can hold.
_MODULUS = 2147483647
_NULL = "<NULL>"  # how a NULL enters the row string


class Column(NamedTuple):
    """What the fingerprint needs of a schema field (`google.cloud.bigquery.SchemaField` has these)."""

    name: str
    field_type: str  # INTEGER/INT64, STRING, FLOAT, ... (either BigQuery spelling)
    mode: str = "NULLABLE"  # NULLABLE | REQUIRED | REPEATED


_INTEGER_TYPES = {"INTEGER", "INT64"}


def _column_expr(c: Column) -> str:
    name = f"`{c.name}`"
    if (c.mode or "").upper() == "REPEATED":
        if (c.field_type or "").upper() in _INTEGER_TYPES:
            # Length, sum and position-weighted sum of the values (each reduced first: no overflow).
            v = f"MOD(v, {_MODULUS})"
            return (
                f"FORMAT('%d:%d:%d', ARRAY_LENGTH({name}), "
                f"(SELECT IFNULL(SUM({v}), 0) FROM UNNEST({name}) AS v), "
                f"(SELECT IFNULL(SUM({v} * (o + 1)), 0) FROM UNNEST({name}) AS v WITH OFFSET o))"
            )
        return f"TO_JSON_STRING({name})"
    if (c.field_type or "").upper() in ("RECORD", "STRUCT", "JSON", "GEOGRAPHY"):
        return f"IFNULL(TO_JSON_STRING({name}), '{_NULL}')"
    return f"IFNULL(CAST({name} AS STRING), '{_NULL}')"


def fingerprint_sql(table: str, columns: Iterable[Column | tuple], where: str | None = None) -> str:
    """The fingerprint query of the fully qualified `table` (optionally only the rows `where` selects),
    over `columns` in the given order. Result columns: `n`, `x` (BIT_XOR), `s` (modular SUM)."""
    cols: Sequence[Column] = [Column(*c) if not isinstance(c, Column) else c for c in columns]
    if not cols:
        raise ValueError(f"no columns to fingerprint in {table}")
    row = ", '|', ".join(_column_expr(c) for c in cols)
    h = f"FARM_FINGERPRINT(CONCAT({row}))"
    sql = (
        f"SELECT COUNT(*) AS n, IFNULL(BIT_XOR(h), 0) AS x, IFNULL(SUM(MOD(h, {_MODULUS})), 0) AS s "
        f"FROM (SELECT {h} AS h FROM `{table}`"
    )
    if where:
        sql += f" WHERE {where}"
    return sql + ")"


def format_fingerprint(rows: int, xor: int, total: int) -> str:
    return f"rows={int(rows)};xor={int(xor) & 0xFFFFFFFFFFFFFFFF:016x};sum={int(total)}"


def table_fingerprint(client, table: str, where: str | None = None) -> str:
    """Run the fingerprint query of `table` ("project.dataset.table") with a
    `google.cloud.bigquery.Client`; raise NotFoundError naming the table if it does not exist."""
    from google.api_core import exceptions as gexc

    try:
        schema = client.get_table(table).schema
        columns = [Column(f.name, f.field_type, f.mode) for f in schema]
        row = next(iter(client.query(fingerprint_sql(table, columns, where)).result()))
    except gexc.NotFound:
        raise NotFoundError(f"table {table} does not exist") from None
    return format_fingerprint(row["n"], row["x"], row["s"])
