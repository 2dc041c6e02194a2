"""A quick-profile pipeline run on a small slice of real MNIST, shared by the e2e tests."""

from __future__ import annotations

import pytest

from pipeline.configs import PROFILES, PipelineConfig

QUICK_ROWS = max(PROFILES["quick"].row_limits.values())


@pytest.fixture(scope="session")
def quick_data(bq_settings):
    """The first QUICK_ROWS rows of each real MNIST table (the quick profile reads key < N)."""
    from mlpipe.bigquery.load import load_mnist_tables

    settings = bq_settings.replace(dataset="mnist_e2e")
    load_mnist_tables(settings, limit=QUICK_ROWS)
    return settings


@pytest.fixture(scope="session")
def pipeline_state(tmp_path_factory, quick_data):
    """Settings whose state dir holds this session's pipeline root, MLMD and serving dir."""
    return quick_data.replace(state_dir=tmp_path_factory.mktemp("pipeline-state"))


def quick_config(settings, **overrides) -> PipelineConfig:
    return PipelineConfig.for_profile(settings, "quick", **overrides)
