"""The console over a real pipeline's state: the two quick-profile runs of the `two_runs` fixture (real
TFX components, ML Metadata, TFDV statistics, TFMA evaluation, registry pushes)."""

from __future__ import annotations

import pytest

from mlpipe.console.app import create_app

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(two_runs):
    return create_app(two_runs.settings).test_client()


def _ok(client, url: str) -> str:
    r = client.get(url)
    text = r.get_data(as_text=True)
    assert r.status_code == 200, (url, r.status_code, text[-500:])
    assert "Traceback" not in text
    return text


def test_runs_show_real_metrics_and_components(client, two_runs):
    runs = _ok(client, "/runs")
    assert "pushed v1" in runs and "pushed v2" in runs
    run = _ok(client, f"/runs/{two_runs.second.run_id}")
    for component in ("Trainer", "Evaluator", "Pusher", "sparse_categorical_accuracy"):
        assert component in run
    compare = _ok(client, f"/runs/compare?a={two_runs.first.run_id}&b={two_runs.second.run_id}")
    assert "max_iteration_steps" in compare or "chosen architecture" in compare


def test_version_lineage_and_statistics_of_a_real_run(client, two_runs):
    version = _ok(client, "/models/v2")
    assert "Confusion matrix" in version and "<svg" in version
    lineage = _ok(client, "/lineage/v2")
    table = two_runs.settings.table_id("train")
    assert f"/data/tables/{table}" in lineage and "Evaluator" in lineage
    data = _ok(client, f"/data/runs/{two_runs.second.run_id}")
    assert "examples" in data and "image" in data and "label histogram" in data
    forward = _ok(client, f"/data/tables/{table}")
    assert "/models/v1" in forward and "/models/v2" in forward
