"""A quick-profile pipeline run on a small slice of real MNIST, shared by the e2e tests."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from mlpipe.config import Settings
from mlpipe.run_summary import RunSummary
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


@dataclass(frozen=True)
class TwoRuns:
    """Settings and summaries of the `two_runs` fixture's pipeline runs."""

    settings: Settings
    config: PipelineConfig  # the second run's
    first: RunSummary
    second: RunSummary


@pytest.fixture(scope="session")
def two_runs(bq_settings, tmp_path_factory) -> TwoRuns:
    """Two quick-profile runs in their own dataset and state dir: the first pushes v1; the second,
    trained with fewer steps per iteration and a regression tolerance of 1.0, is evaluated against v1
    as its baseline, blessed and pushed as v2."""
    from mlpipe.bigquery.load import load_mnist_tables
    from mlpipe.pipeline_run import run_local

    settings = bq_settings.replace(dataset="mnist_lineage", state_dir=tmp_path_factory.mktemp("lineage-state"))
    load_mnist_tables(settings, limit=QUICK_ROWS)
    first = run_local(quick_config(settings))
    base = quick_config(settings, regression_tolerance=1.0)
    search = base.training.search.replace(max_iteration_steps=120)
    second_cfg = dataclasses.replace(base, training=dataclasses.replace(base.training, search=search))
    second = run_local(second_cfg)
    return TwoRuns(settings, second_cfg, first, second)
