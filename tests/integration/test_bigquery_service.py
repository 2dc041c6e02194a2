"""Start/stop/restart of the real emulator process, and the CLI's one-line errors."""

import os
import socket
import subprocess
import sys

import pytest

from mlpipe.bigquery import service
from mlpipe.bigquery.load import load_mnist_tables, table_counts
from mlpipe.errors import ServiceStateError, ServiceUnavailable
from tests.conftest import make_settings


@pytest.fixture
def own_settings(tmp_path):
    s = make_settings(tmp_path / "state")
    yield s
    service.stop(s)


@pytest.mark.emulator  # starts its own emulator
def test_start_stop_restart_keeps_data(own_settings):
    s = own_settings
    st = service.start(s)
    assert st.running and service.is_healthy(s)
    with pytest.raises(ServiceStateError, match="already running"):
        service.start(s)
    load_mnist_tables(s, limit=20, splits=("test",))
    assert service.stop(s) is True
    assert not service.is_healthy(s) and not service.status(s).running
    with pytest.raises(ServiceUnavailable, match="mlpipe bq start"):
        table_counts(s, ("test",))
    service.start(s)
    assert table_counts(s, ("test",)) == {"test": 20}
    assert st.log_file.exists() and st.log_file.stat().st_size > 0


@pytest.mark.emulator  # starts its own emulator
def test_stale_pid_file_is_cleaned(own_settings):
    s = own_settings
    s.state_dir.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (s.state_dir / "bigquery.pid").write_text(f"{dead.pid}\n")
    assert not service.status(s).running
    st = service.start(s)
    assert st.pid != dead.pid and service.is_healthy(s)


@pytest.mark.emulator  # starts its own emulator
def test_port_in_use_is_refused(own_settings):
    s = own_settings
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", s.bq_port))
        blocker.listen()
        with pytest.raises(ServiceStateError, match=f"port {s.bq_port}"):
            service.start(s)
    assert not (s.state_dir / "bigquery.pid").exists()


def _cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "mlpipe.cli", *args], capture_output=True, text=True, env=env
    )


def test_cli_says_how_to_start_when_down(tmp_path):
    s = make_settings(tmp_path)
    r = _cli("data-summary", "--state-dir", str(tmp_path), "--bq-port", str(s.bq_port))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"error: BigQuery is not reachable at http://127.0.0.1:{s.bq_port}; start the local "
        "service with `mlpipe bq start` (or `make bq-start`)"
    ]


def test_cli_unknown_table_and_bad_limit(bq_settings):
    flags = ["--state-dir", str(bq_settings.state_dir), "--bq-port", str(bq_settings.bq_port),
             "--bq-grpc-port", str(bq_settings.bq_grpc_port)]
    r = _cli("data-summary", "--tables", "nope", *flags)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "mnist.nope does not exist" in r.stderr
    r = _cli("load-data", "--limit", "0", *flags)
    assert r.returncode == 2 and "positive" in r.stderr and "Traceback" not in r.stderr
    r = _cli("data-summary", "--dataset", "nodataset", *flags)
    assert r.returncode == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr
