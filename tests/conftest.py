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
    "searched": "training",  # tests/unit/test_search_report.py: a tiny real AdaNet search
    "transformed": "training",  # tests/unit/test_model_code.py: a real tf.Transform run
    "trained": "training",  # tests/unit/test_model_code.py: run_fn end to end
}
SLOW_MARKERS = {"emulator", "server", "pipeline", "training"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        kinds = {SLOW_FIXTURES[f] for f in getattr(item, "fixturenames", ()) if f in SLOW_FIXTURES}
        for kind in sorted(kinds):
            item.add_marker(kind)
        if kinds or any(item.get_closest_marker(m) for m in SLOW_MARKERS):
            item.add_marker("e2e")


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
