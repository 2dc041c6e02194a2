"""A quick-profile pipeline run on a small slice of real MNIST, shared by the e2e tests."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from mlpipe.config import Settings
from mlpipe.metadata.runs import RunRecord
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


def with_search(cfg: PipelineConfig, **changes) -> PipelineConfig:
    """`cfg` with AdaNet search-space fields changed (steps, iterations, seed, ...)."""
    search = cfg.training.search.replace(**changes)
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, search=search))


# One step of one iteration: far below any trained model. With the floor at 0 the floor cannot be
# the reason a run is (not) blessed, which isolates the "no regression vs the baseline" gate.
WEAK_FLAGS = ("--steps-per-iteration", "1", "--iterations", "1", "--accuracy-floor", "0")

LINEAGE_MODEL = "digits"  # not the default model name: the runs must honour --model and --registry-root


@dataclass(frozen=True)
class TwoRuns:
    """Settings and records of the `two_runs` fixture's pipeline runs."""

    settings: Settings  # with the registry root and model name the runs were given
    config: PipelineConfig  # the second run's
    first: RunRecord
    second: RunRecord

    @property
    def registry_flags(self) -> list[str]:
        return ["--model", self.settings.model_name, "--registry-root", self.settings.registry_root]


@pytest.fixture(scope="session")
def two_runs(bq_settings, tmp_path_factory) -> TwoRuns:
    """Two quick-profile runs through the `mlpipe run` command, in their own dataset and state dir,
    pushing to model `digits` in a registry outside the state dir. The first trains one step of one
    iteration with the accuracy floor at 0, so it is blessed and pushed as a deliberately weak v1 (and
    the gate is tested from the other side: a model reliably ABOVE its baseline). The second trains
    120 steps per iteration with the default regression tolerance 0, is evaluated against v1 as its
    baseline, blessed and pushed as v2."""
    from mlpipe.bigquery.load import load_mnist_tables
    from mlpipe.cli import main
    from mlpipe.metadata.graph import MetadataGraph
    from mlpipe.metadata.runs import list_runs

    registry_root = tmp_path_factory.mktemp("lineage-registry")
    settings = bq_settings.replace(dataset="mnist_lineage", state_dir=tmp_path_factory.mktemp("lineage-state"),
                                   model_name=LINEAGE_MODEL, registry_root=str(registry_root))
    load_mnist_tables(settings, limit=QUICK_ROWS)
    run = ["run", "--profile", "quick", "--state-dir", str(settings.state_dir), "--dataset", settings.dataset,
           "--bq-port", str(settings.bq_port), "--bq-grpc-port", str(settings.bq_grpc_port),
           "--model", LINEAGE_MODEL, "--registry-root", str(registry_root)]
    assert main([*run, *WEAK_FLAGS]) == 0
    assert main([*run, "--steps-per-iteration", "120"]) == 0
    second_cfg = with_search(quick_config(settings), max_iteration_steps=120)
    first, second = list_runs(MetadataGraph.open(settings.metadata_path, settings.pipeline_name))
    return TwoRuns(settings, second_cfg, first, second)
