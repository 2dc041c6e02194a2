"""Run `local-bigquery` with DuckDB's file access fenced to the emulator's own data directory.

The emulator hands SQL to DuckDB, whose table functions read and write any file the user can
(`read_text('/etc/hostname')`, `COPY … TO '/tmp/x.csv'`, `ATTACH`, `INSTALL`). This wrapper, run by
the emulator's own interpreter (`.venv-bq/bin/python emulator_main.py serve …`, Python ≥ 3.13; it
imports nothing of mlpipe), wraps the emulator's one shared DuckDB connection so that once it is set
up: the extensions the emulator uses are loaded, `allowed_directories` is the data directory (tables,
uploads, the emulated gs:// buckets), `enable_external_access` is off, and `lock_configuration` makes
SQL unable to switch either back. Anything outside the data directory is then a
"Permission Error … file system operations are disabled by configuration".
"""

from __future__ import annotations

import functools
import sys

PRELOAD = ("json", "icu", "parquet", "spatial")


def fence(con, data_dir: str) -> None:
    for ext in PRELOAD:
        try:
            con.execute(f"LOAD {ext}")
        except Exception:  # noqa: BLE001  (an extension this emulator build lacks is not needed)
            pass
    root = data_dir.rstrip("/") + "/"
    quoted = root.replace("'", "''")
    con.execute(f"SET temp_directory = '{quoted}.duckdb_tmp'")
    con.execute(f"SET allowed_directories = ['{quoted}']")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def main(argv: list[str] | None = None) -> int:
    from local_bigquery.cli import main as emulator_main
    from local_bigquery.engine import database
    from local_bigquery.settings import settings

    unfenced = database._connect.__wrapped__

    @functools.cache
    def _connect():
        con = unfenced()
        fence(con, str(settings.data_dir.resolve()))
        return con

    database._connect = _connect
    emulator_main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
