"""Shared fixtures: a real local BigQuery emulator on test-only ports, in a temporary state dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpipe.bigquery import service
from mlpipe.config import Settings, load_settings
from mlpipe.procutil import free_loopback_port

# Fixtures that start something slow. A test that uses one (directly or through another fixture) is
# marked with its kind; every kind below also marks the test `e2e`, which `make test-unit` deselects.
SLOW_FIXTURES = {
    "bq_settings": "emulator",
    "mnist_full": "emulator",
    "served": "server",
    "logging_server": "server",
    "pipeline_state": "pipeline",
    "two_runs": "pipeline",
    "quick_data": "pipeline",
    "loop": "pipeline",  # tests/e2e/test_dev_loop.py
    "feedback_run": "pipeline",  # tests/e2e/test_feedback_training.py
    "pipeline_run": "pipeline",  # tests/cloud/test_compiled_pipeline_offline.py
    "searched": "training",  # tests/unit/test_search_report.py: a tiny real AdaNet search
    "transformed": "training",  # tests/unit/test_model_code.py: a real tf.Transform run
    "trained": "training",  # tests/unit/test_model_code.py: run_fn end to end
}
SLOW_MARKERS = {"emulator", "server", "pipeline", "training"}

# Session fixtures that build pipeline runs for several modules. Under `make test` (pytest-xdist,
# `--dist loadgroup`) every test that uses one runs on the same worker, so each is built once.
SHARED_SESSION_FIXTURES = ("two_runs", "pipeline_state")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        kinds = {SLOW_FIXTURES[f] for f in getattr(item, "fixturenames", ()) if f in SLOW_FIXTURES}
        for kind in sorted(kinds):
            item.add_marker(kind)
        if kinds or any(item.get_closest_marker(m) for m in SLOW_MARKERS):
            item.add_marker("e2e")
    groups = {item: _group(item) for item in items}
    # Pipeline groups first: a worker that gets one late would run alone at the end.
    heavy = {groups[i] for i in items if i.get_closest_marker("pipeline")}
    items.sort(key=lambda i: groups[i] not in heavy)
    if getattr(config.option, "loadgroup", False):
        for item in items:
            _pin_to_group(item, groups[item])


def _group(item) -> str:
    """A module's tests stay together (module fixtures are built once), and so do the modules that
    share one of SHARED_SESSION_FIXTURES."""
    shared = [f for f in SHARED_SESSION_FIXTURES if f in getattr(item, "fixturenames", ())]
    return shared[0] if shared else item.nodeid.split("::")[0].split("@")[0]


def _pin_to_group(item, group: str) -> None:
    """What pytest-xdist's `xdist_group` mark means: `--dist loadgroup` schedules by the node id's
    "@group" suffix. xdist 3.8 appends it to `item._nodeid`, which pytest 9 no longer reads (the id
    lives in `item._id`), so the mark alone is silently ignored; append it where pytest reads it."""
    from _pytest.nodeid import coerce_node_id

    if "@" not in item.nodeid.rsplit("]", 1)[-1]:
        item._id = coerce_node_id(f"{item.nodeid}@{group}")


def free_port() -> int:
    return free_loopback_port()


def make_settings(state_dir: Path, **overrides) -> Settings:
    """Settings for a test: own state dir and free ports, never the user's `.mlpipe` or 9050."""
    return load_settings(
        environ={},
        state_dir=state_dir,
        bq_port=free_port(),
        bq_grpc_port=free_port(),
        **overrides,
    )


@pytest.fixture(scope="session")
def bq_settings(tmp_path_factory) -> Settings:
    """One emulator for the whole session; stopped at the end."""
    settings = make_settings(tmp_path_factory.mktemp("state"))
    service.start(settings)
    yield settings
    service.stop(settings)


@pytest.fixture(scope="session")
def mnist_full(bq_settings) -> Settings:
    """All 70,000 real MNIST rows loaded into the session emulator."""
    from mlpipe.bigquery.load import load_mnist_tables

    load_mnist_tables(bq_settings)
    return bq_settings
