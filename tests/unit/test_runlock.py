"""One pipeline run per state dir: a second `mlpipe run` is refused at once, naming the run in progress."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from mlpipe.cli import main
from mlpipe.runlock import RunInProgressError, run_lock
from tests.conftest import make_settings

HOLDER = """
import sys, time
from pathlib import Path
from mlpipe.config import load_settings
from mlpipe.runlock import run_lock
with run_lock(load_settings(environ={}, state_dir=Path(sys.argv[1])), "holder-run"):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding the state dir's run lock (as a running `mlpipe run` does)."""
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(state)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield state, proc
    finally:
        proc.kill()
        proc.wait()


def test_second_run_is_refused_naming_the_first(holder, capsys):
    state, proc = holder
    settings = make_settings(state)
    started = time.perf_counter()
    code = main(["run", "--profile", "quick", "--state-dir", str(state),
                 "--bq-port", str(settings.bq_port), "--bq-grpc-port", str(settings.bq_grpc_port)])
    err = capsys.readouterr().err
    assert code != 0
    assert f"another run (pid {proc.pid}, started " in err and "is in progress" in err, err
    assert "Traceback" not in err
    log_elapsed = time.perf_counter() - started
    print(f"refused after {log_elapsed:.2f}s")  # shown with -s; not asserted (timing)


def test_lock_is_released_when_the_holder_dies(holder):
    state, proc = holder
    settings = make_settings(state)
    with pytest.raises(RunInProgressError):
        with run_lock(settings):
            pass
    proc.kill()
    proc.wait()
    with run_lock(settings, "mine"):  # the kernel dropped the dead process's lock
        assert f'"pid": {os.getpid()}' in settings.run_lock_file.read_text()


def test_same_process_second_lock_is_refused(tmp_path):
    settings = make_settings(tmp_path)
    with run_lock(settings, "a"):
        with pytest.raises(RunInProgressError, match=rf"another run \(pid {os.getpid()}, started \d{{4}}-"):
            with run_lock(settings, "b"):
                pass
    with run_lock(settings, "c"):
        pass
