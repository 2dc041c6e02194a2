"""Console tests: a sample state dir (real MLMD store, real registry) and a Flask test client on it."""

from __future__ import annotations

import pytest

from mlpipe.console.app import create_app
from mlpipe.console.sample_store import build_sample_state
from tests.conftest import make_settings
from tests.contract_models import fake_models  # noqa: F401  (a fixture)


def _sample(base, fake_models):  # noqa: F811
    """8 runs (the 7th failed at ExampleValidator), 3 versions; BigQuery ports with nothing behind them."""
    return build_sample_state(make_settings(base / "state"), runs=8, versions=3, saved_model=fake_models[0])


@pytest.fixture(scope="module")
def sample(tmp_path_factory, fake_models):  # noqa: F811
    """For tests that only read."""
    return _sample(tmp_path_factory.mktemp("console"), fake_models)


@pytest.fixture
def client(sample):
    return create_app(sample.settings).test_client()


@pytest.fixture
def fresh_client(tmp_path, fake_models):  # noqa: F811
    """For tests that change the registry: their own state."""
    return create_app(_sample(tmp_path, fake_models).settings).test_client()


def token(client) -> str:
    return client.application.extensions["mlpipe_console"].csrf_token
