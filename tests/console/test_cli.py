"""`mlpipe console` as a user starts it: a real process on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from mlpipe.procutil import free_loopback_port

pytestmark = pytest.mark.e2e


def _console(tmp_path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mlpipe.cli", "console", "--port", str(port), "--state-dir", str(tmp_path),
         "--bq-port", str(free_loopback_port()), "--bq-grpc-port", str(free_loopback_port())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_console_serves_pages_on_loopback(tmp_path):
    port = free_loopback_port()
    proc = _console(tmp_path, port)
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/runs", timeout=30) as r:
                    assert r.status == 200
                    assert "mlpipe run" in r.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_busy_port_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = _console(tmp_path, busy.getsockname()[1])
        out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert err.strip().startswith("error: cannot listen on 127.0.0.1:")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
