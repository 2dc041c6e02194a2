"""Run the pipeline locally: preflight checks, LocalDagRunner, and the summary read from MLMD."""

from __future__ import annotations

import contextlib
import logging
import re
import time

from mlpipe.bigquery.client import bq_client
from mlpipe.bigquery.service import ensure_running
from mlpipe.errors import MlpipeError, NotFoundError
from mlpipe.metadata.graph import MetadataGraph
from mlpipe.metadata.runs import RunRecord, run_record
from pipeline.configs import PipelineConfig

log = logging.getLogger(__name__)


class PipelineFailed(MlpipeError):
    """A component failed; the message says which and why in one line."""


def source_fingerprint(cfg: PipelineConfig) -> str:
    """Last-modified times of the source tables: a reload invalidates the cached ExampleGen."""
    from google.api_core import exceptions as gexc

    from pipeline.queries import split_queries

    client = bq_client(cfg.settings)
    parts = []
    tables = {t for q in split_queries(cfg.settings.project, cfg.settings.dataset, cfg.row_limits,
                                       feedback=cfg.reads_feedback) for t in q.tables}
    for name in sorted(tables):
        try:
            table = client.get_table(name)
        except gexc.NotFound:
            raise NotFoundError(f"table {name} does not exist; run `mlpipe load-data` first") from None
        modified = table.modified.isoformat() if table.modified else "?"
        parts.append(f"{name}@{modified}:{table.num_rows}")
    return ";".join(parts)


def run_local(cfg: PipelineConfig) -> RunRecord:
    """Run `create_pipeline(cfg)` with LocalDagRunner and MLMD SQLite under the state dir."""
    import dataclasses

    from tfx import v1 as tfx

    from pipeline.feedback_source import with_feedback_rows
    from pipeline.pipeline import create_pipeline

    ensure_running(cfg.settings)
    cfg = with_feedback_rows(cfg)
    cfg = dataclasses.replace(cfg, source_fingerprint=source_fingerprint(cfg))
    cfg.metadata_path.parent.mkdir(parents=True, exist_ok=True)
    cfg.pipeline_root.mkdir(parents=True, exist_ok=True)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(cfg.metadata_path))
    pipeline = create_pipeline(cfg, metadata_connection_config=metadata)
    started = time.perf_counter()
    try:
        with component_progress(len(pipeline.components)):
            tfx.orchestration.LocalDagRunner().run(pipeline)
    except Exception as e:  # the runner re-raises the component's exception as is
        raise PipelineFailed(_one_line(e)) from e
    finally:
        log.info("pipeline finished in %.1fs", time.perf_counter() - started)
    graph = MetadataGraph.open(cfg.metadata_path, cfg.pipeline_name)
    return run_record(graph, graph.run_ids()[-1])


_COMPONENT_EVENT = re.compile(r"Component (\S+) is (running|finished)\.")


class _ComponentProgress(logging.Handler):
    """Advances a progress bar on LocalDagRunner's "Component X is running/finished." log lines
    (matched on the formatted message: absl hands some of them over already formatted)."""

    def __init__(self, bar) -> None:
        super().__init__(logging.INFO)
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        try:
            m = _COMPONENT_EVENT.fullmatch(record.getMessage())
        except Exception:  # a record whose arguments do not fit its format: not ours
            return
        if m and m.group(2) == "running":
            self.bar.set_postfix_str(m.group(1))
        elif m:
            self.bar.update(1)


@contextlib.contextmanager
def component_progress(total: int):
    from absl import logging as absl_logging
    from tqdm import tqdm

    # The runner announces components through absl at INFO. A component that parses absl's flags
    # (Transform does) would reset absl's verbosity to its WARNING default and silence them; setting
    # the verbosity flag itself survives that parse. The CLI's handlers still show only warnings.
    absl_logging.set_verbosity(absl_logging.INFO)
    # On the root logger: components may reconfigure the `absl` logger while they run.
    root = logging.getLogger()
    with tqdm(total=total, desc="pipeline", unit="component") as bar:
        handler = _ComponentProgress(bar)
        root.addHandler(handler)
        try:
            yield bar
        finally:
            root.removeHandler(handler)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"
