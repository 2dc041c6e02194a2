"""Process hygiene of `mlpipe bq stop/status/start` and the emulator's fenced file access."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from mlpipe.bigquery import service
from tests.conftest import make_settings


@pytest.fixture
def sleeper():
    """A process of the same user that is not the emulator, leading its own group like it would."""
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _write_pid_file(settings, content: str) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    settings.bq_pid_file.write_text(content)


@pytest.mark.parametrize("form", ["bare", "record", "record-with-port"])
def test_stop_never_signals_a_process_that_is_not_our_emulator(tmp_path, sleeper, form):
    s = make_settings(tmp_path)
    ticks = service._proc_start_ticks(sleeper.pid)
    content = {
        "bare": f"{sleeper.pid}\n",
        "record": json.dumps({"pid": sleeper.pid, "start_ticks": ticks, "cmdline": ["sleep", "120"]}),
        # Even a command line that claims the emulator must match the live process's.
        "record-with-port": json.dumps({"pid": sleeper.pid, "start_ticks": ticks, "cmdline": [
            "python", str(service.LAUNCHER), "serve", "--port", str(s.bq_port)]}),
    }[form]
    _write_pid_file(s, content)
    assert not service.status(s).running
    _write_pid_file(s, content)
    assert service.stop(s) is False
    assert sleeper.poll() is None, "the unrelated process was signalled"
    assert not s.bq_pid_file.exists(), "the stale PID file stays"


@pytest.mark.parametrize("content", ["0\n", "-1\n", "1\n", '{"pid": 0}', '{"pid": -5}', "garbage", "{}"])
def test_pid_zero_negative_and_garbage_are_never_signalled(tmp_path, content):
    s = make_settings(tmp_path)
    _write_pid_file(s, content)
    assert service.stop(s) is False and not s.bq_pid_file.exists()
    with pytest.raises(Exception, match="refusing"):
        service._terminate(0)


def test_a_recycled_pid_is_not_trusted(tmp_path, sleeper):
    s = make_settings(tmp_path)
    record = {"pid": sleeper.pid, "start_ticks": (service._proc_start_ticks(sleeper.pid) or 0) - 1,
              "cmdline": list(service._proc_cmdline(sleeper.pid))}
    _write_pid_file(s, json.dumps(record))
    assert service.stop(s) is False and sleeper.poll() is None


def _bq_query(settings, sql: str) -> subprocess.CompletedProcess:
    flags = ["--state-dir", str(settings.state_dir), "--bq-port", str(settings.bq_port),
             "--bq-grpc-port", str(settings.bq_grpc_port)]
    return subprocess.run([sys.executable, "-m", "mlpipe.cli", "bq", "query", sql, *flags],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.e2e
def test_emulator_sql_cannot_read_or_write_local_files(bq_settings, tmp_path):
    r = _bq_query(bq_settings, "SELECT content FROM read_text('/etc/hostname')")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "disabled by configuration" in r.stderr or "Permission" in r.stderr, r.stderr
    target = tmp_path / "leak.csv"
    r = _bq_query(bq_settings, f"COPY (SELECT 1 AS x) TO '{target}'")
    assert r.returncode != 0 and not target.exists(), r.stdout + r.stderr
    r = _bq_query(bq_settings, "SELECT * FROM read_csv('/etc/passwd')")
    assert r.returncode != 0 and "root:" not in r.stdout
    # The fence cannot be lifted from SQL.
    r = _bq_query(bq_settings, "SET enable_external_access = true")
    r2 = _bq_query(bq_settings, "SELECT content FROM read_text('/etc/hostname')")
    assert r2.returncode != 0
    # Ordinary SQL still works, and the emulator is the process its PID file names.
    r = _bq_query(bq_settings, "SELECT 40 + 2 AS answer")
    assert r.returncode == 0 and "42" in r.stdout, r.stderr
    pid = service.status(bq_settings).pid
    assert pid is not None and str(service.LAUNCHER) in service._proc_cmdline(pid)
    assert os.getpgid(pid) == pid and signal.SIGTERM  # it leads its own group (what stop signals)
