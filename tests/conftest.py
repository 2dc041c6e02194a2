"""Shared fixtures: a real local BigQuery emulator on test-only ports, in a temporary state dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpipe.bigquery import service
from mlpipe.config import Settings, load_settings
from mlpipe.procutil import free_loopback_port


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
