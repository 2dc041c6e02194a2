"""`mlpipe run` checks BigQuery, the source tables and the registry before it imports TensorFlow, so a
broken setup is reported in about a second instead of after TensorFlow's 20 s import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlpipe.bigquery.load import load_mnist_tables
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]
# `mlpipe run` in a fresh interpreter, then whether TensorFlow got imported on the way to its error.
PROBE = """
import sys
from mlpipe.cli import main
rc = main(sys.argv[1:])
print("TENSORFLOW_IMPORTED=" + str("tensorflow" in sys.modules))
sys.exit(rc)
"""


def _run(settings, *extra: str) -> subprocess.CompletedProcess:
    args = ["run", "--profile", "quick", "--state-dir", str(settings.state_dir), "--dataset", settings.dataset,
            "--bq-port", str(settings.bq_port), "--bq-grpc-port", str(settings.bq_grpc_port), *extra]
    return subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def _assert_fails_before_tensorflow(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "TENSORFLOW_IMPORTED=False" in proc.stdout, proc.stdout


def test_bigquery_down(tmp_path):
    settings = make_settings(tmp_path / "state")  # nothing listens on its ports
    _assert_fails_before_tensorflow(_run(settings), "BigQuery is not reachable")


def test_table_missing(bq_settings, tmp_path):
    settings = bq_settings.replace(dataset="preflight_empty", state_dir=tmp_path / "state")
    _assert_fails_before_tensorflow(_run(settings), "preflight_empty.train does not exist; run `mlpipe load-data`")


@pytest.fixture(scope="module")
def loaded(bq_settings):
    settings = bq_settings.replace(dataset="preflight")
    load_mnist_tables(settings, limit=10)
    return settings


def test_registry_not_writable(loaded, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = loaded.replace(state_dir=tmp_path / "state")
    proc = _run(settings, "--registry-root", str(blocker / "registry"))
    _assert_fails_before_tensorflow(proc, "is not writable")
