"""`mlpipe lineage` and `mlpipe runs`: thin shells over mlpipe.lineage's report, runs and render."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mlpipe.config import Settings
from mlpipe.display import display_path
from mlpipe.errors import UsageError

log = logging.getLogger(__name__)

FORMATS = ("text", "json", "dot", "png", "svg")
# Library chatter at import (INFO from absl/Beam, deprecation notes from TensorFlow) that would bury
# the report; -v keeps it.
NOISY_LOGGERS = {"absl": logging.WARNING, "apache_beam": logging.WARNING, "tensorflow": logging.ERROR}


def _add_store_flags(p: argparse.ArgumentParser, registry: bool) -> None:
    from mlpipe.registry.cli import add_registry_flags

    p.add_argument("--metadata-path", dest="metadata_path",
                   help="ML Metadata SQLite file (default STATE_DIR/metadata/mnist-automl.sqlite)")
    if registry:
        add_registry_flags(p)


def _graph(args: argparse.Namespace, settings: Settings):
    if not getattr(args, "verbose", False):
        for name, level in NOISY_LOGGERS.items():
            logging.getLogger(name).setLevel(level)
    from mlpipe.metadata.graph import MetadataGraph

    path = Path(args.metadata_path) if args.metadata_path else settings.metadata_path
    return MetadataGraph.open(path, settings.pipeline_name)


def _registry(args: argparse.Namespace, settings: Settings):
    from mlpipe.registry import registry_for
    from mlpipe.registry.cli import registry_settings

    return registry_for(registry_settings(args, settings))


def _emit(text: str, output: str | None) -> None:
    if output is None:
        print(text)
        return
    Path(output).write_text(text + "\n")
    print(f"wrote {output}")


def _lineage(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.lineage import render, report

    fmt = "json" if args.json else args.format
    chosen = [name for name, value in (("VERSION", args.version), ("--alias", args.alias),
                                       ("--artifact-id", args.artifact_id), ("--table", args.table))
              if value is not None]
    if len(chosen) > 1:
        raise UsageError(f"give one of VERSION, --alias, --artifact-id, --table (got {' and '.join(chosen)})")
    if args.table is not None and fmt not in ("text", "json"):
        raise UsageError("--table lists models; use --format text or json (pictures show one model's lineage)")
    graph = _graph(args, settings)
    registry = _registry(args, settings)

    if args.table is not None:
        table = report.qualify_table(args.table, settings.project, settings.dataset)
        found = report.models_from_table(graph, registry, table)
        _emit(render.to_json(found.to_dict()) if fmt == "json" else render.table_text(found), args.output)
        return 0

    if args.artifact_id is not None:
        lineage = report.lineage_of_artifact(graph, registry, args.artifact_id)
    else:
        lineage = report.lineage_of_version(graph, registry, version=args.version, alias=args.alias)
    if fmt == "json":
        _emit(render.to_json(lineage.to_dict()), args.output)
    elif fmt == "text":
        _emit(render.lineage_tree(lineage), args.output)
    else:
        name = f"{lineage.registry.model} {lineage.registry.version}" if lineage.registry else "model"
        dot = render.lineage_dot(lineage.graph, f"Lineage of {name} (Model #{lineage.model.artifact_id})")
        if fmt == "dot":
            _emit(dot, args.output)
        else:
            # An image on a terminal is noise: without -o it goes to a file named after the version,
            # in the state dir (not into the checkout the command happens to run in).
            stem = lineage.registry.version if lineage.registry else f"model{lineage.model.artifact_id}"
            path = Path(args.output) if args.output else image_path(settings, stem, fmt)
            image = render.render_image(dot, fmt)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image)
            print(f"wrote {display_path(path)}")
    return 0


def image_path(settings: Settings, stem: str, fmt: str) -> Path:
    """Default file of a lineage picture: STATE_DIR/lineage/lineage-STEM.FMT."""
    return settings.lineage_dir / f"lineage-{stem}.{fmt}"


def _runs_list(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.lineage import render
    from mlpipe.metadata import runs

    graph = _graph(args, settings)
    found = runs.list_runs(graph)
    if args.json:
        print(render.to_json(render.runs_document(graph.pipeline_name, graph.path, found)))
    else:
        print(render.runs_text(graph.pipeline_name, graph.path, found))
    return 0


def _runs_show(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.lineage import render
    from mlpipe.metadata import runs

    graph = _graph(args, settings)
    record = runs.run_record(graph, runs.find_run(graph, args.run))
    print(render.to_json(record.to_dict()) if args.json else render.run_text(record))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an artifact id: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"artifact ids are positive, not {value}")
    return value


def register(sub, add_settings_flags) -> None:
    p = sub.add_parser(
        "lineage", help="which data, run and baseline produced a model (from ML Metadata)",
        description="Walk ML Metadata from a registry version (default: the serving default) back through "
        "Pusher, Evaluator, Trainer, Transform, ExampleValidator and StatisticsGen to ExampleGen's BigQuery "
        "tables; or, with --table, list the models trained from a table.")
    p.add_argument("version", nargs="?", help="registry version, e.g. v2 (default: the default version)")
    p.add_argument("--alias", help="the version an alias points at, e.g. champion")
    p.add_argument("--artifact-id", dest="artifact_id", type=_positive_int,
                   help="an ML Metadata Model or PushedModel artifact id")
    p.add_argument("--table", help="list the models trained from TABLE (DATASET.TABLE or PROJECT.DATASET.TABLE)")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text tree (default), json, dot (Graphviz source), png or svg (need Graphviz's dot)")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("-o", "--output", help="write to this file instead of standard output "
                   "(png/svg default: STATE_DIR/lineage/lineage-VERSION.png)")
    _add_store_flags(p, registry=True)
    add_settings_flags(p)
    p.set_defaults(handler=_lineage)

    runs = sub.add_parser("runs", help="pipeline runs recorded in ML Metadata",
                          description="Pipeline runs: start, status, time per component, and the version each "
                          "pushed or why it pushed none.")
    actions = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    p = actions.add_parser("list", help="every run, oldest first", description="Every run, oldest first.")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    _add_store_flags(p, registry=False)
    add_settings_flags(p)
    p.set_defaults(handler=_runs_list)
    p = actions.add_parser("show", help="one run's components and artifacts",
                           description="One run: each component's state, time and artifacts.")
    p.add_argument("run", help="run id, a unique prefix of it, or `latest`")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    _add_store_flags(p, registry=False)
    add_settings_flags(p)
    p.set_defaults(handler=_runs_show)
