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
from mlpipe.runlock import run_lock
from pipeline.configs import PipelineConfig

log = logging.getLogger(__name__)


class PipelineFailed(MlpipeError):
    """A component failed; the message says which and why in one line."""


def source_fingerprint(cfg: PipelineConfig) -> str:
    """The contents of the rows each split reads (row count and checksums, computed by BigQuery): any
    reload with different data invalidates the cached ExampleGen; table metadata is not trusted."""
    from mlpipe.bigquery.fingerprint import table_fingerprint
    from pipeline.queries import split_queries

    client = bq_client(cfg.settings)
    parts = []
    queries = split_queries(cfg.settings.project, cfg.settings.dataset, cfg.row_limits,
                            feedback=cfg.reads_feedback)
    for q in queries:
        try:
            fingerprint = table_fingerprint(client, q.table, q.where)
        except NotFoundError:
            raise NotFoundError(f"table {q.table} does not exist; run `mlpipe load-data` first") from None
        parts.append(f"{q.split}={q.table}:{fingerprint}")
    feedback = next((q.feedback_table for q in queries if q.feedback_table), None)
    if feedback:  # every split reads its share of the whole feedback table
        parts.append(f"feedback={feedback}:{table_fingerprint(client, feedback, None)}")
    return ";".join(parts)


def preflight(cfg: PipelineConfig) -> None:
    """What a run needs before it imports TensorFlow (20 s) and starts: BigQuery reachable, the source
    tables present, the registry writable. Raises the one-line error of the first problem."""
    from google.api_core import exceptions as gexc

    from pipeline.queries import split_queries

    ensure_running(cfg.settings)
    client = bq_client(cfg.settings, check=False)
    for q in split_queries(cfg.settings.project, cfg.settings.dataset, cfg.row_limits):
        try:
            client.get_table(q.table)
        except gexc.NotFound:
            raise NotFoundError(f"table {q.table} does not exist; run `mlpipe load-data` first") from None
    registry_writable(cfg.settings.registry_location, cfg.model_name)


def registry_writable(location: str, model: str) -> None:
    """A local registry root must accept new files (a blessed model is pushed at the end of the run);
    checked without creating anything. A bucket is checked by the push itself."""
    import os
    from pathlib import Path

    from mlpipe.errors import EnvironmentSetupError

    if "://" in location:
        return
    target = Path(location).expanduser().absolute() / model
    existing = next(p for p in (target, *target.parents) if p.exists())
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is not a directory"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"no write permission on {existing}"
    if problem:
        raise EnvironmentSetupError(
            f"the model registry at {location} is not writable ({problem}); "
            "fix it or choose another with --registry-root"
        )


def new_run_id() -> str:
    """A pipeline run id in TFX's own format (the local time, ISO 8601)."""
    import datetime

    return datetime.datetime.now().isoformat()


def run_local(cfg: PipelineConfig, run_id: str | None = None) -> RunRecord:
    """Run `create_pipeline(cfg)` with LocalDagRunner and MLMD SQLite under the state dir, as the only
    run of the state dir (`run_lock`), and return the record of THIS run (`run_id`, generated if None)."""
    import dataclasses

    run_id = run_id or new_run_id()
    with run_lock(cfg.settings, run_id):
        preflight(cfg)  # BigQuery, tables, registry: a failure in about a second, before TensorFlow loads
        from pipeline.feedback_source import with_feedback_rows

        cfg = with_feedback_rows(cfg)
        cfg = dataclasses.replace(cfg, source_fingerprint=source_fingerprint(cfg))
        from tfx import v1 as tfx

        from pipeline.pipeline import create_pipeline

        cfg.metadata_path.parent.mkdir(parents=True, exist_ok=True)
        cfg.pipeline_root.mkdir(parents=True, exist_ok=True)
        metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(cfg.metadata_path))
        pipeline = create_pipeline(cfg, metadata_connection_config=metadata)
        started = time.perf_counter()
        try:
            with component_progress(len(pipeline.components)):
                _runner(run_id).run(pipeline)
        except Exception as e:  # the runner re-raises the component's exception as is
            raise PipelineFailed(_one_line(e)) from e
        finally:
            log.info("pipeline run %s finished in %.1fs", run_id, time.perf_counter() - started)
        graph = MetadataGraph.open(cfg.metadata_path, cfg.pipeline_name)
        return run_record(graph, run_id)


def _runner(run_id: str):
    """LocalDagRunner with the pipeline run id chosen here (the stock runner picks `now()` itself, and
    a caller could then only guess which run was its own)."""
    from tfx.dsl.compiler import constants
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.orchestration.portable import runtime_parameter_utils

    class OwnRunIdRunner(LocalDagRunner):
        def run_with_ir(self, pipeline, run_options=None):
            # Bound first, so the stock runner's own substitution finds nothing left to bind.
            runtime_parameter_utils.substitute_runtime_parameter(
                pipeline, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
            return super().run_with_ir(pipeline, run_options=run_options)

    return OwnRunIdRunner()


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
