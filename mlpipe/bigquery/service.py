"""Start, stop and inspect the local BigQuery emulator (`local-bigquery`) as a background service.

The emulator needs Python ≥ 3.13, so it lives in its own venv (`.venv-bq/`) and runs as a separate
process: REST on `bq_port`, Storage Read API (gRPC) on `bq_grpc_port`, both bound to 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mlpipe.config import Settings
from mlpipe.errors import EnvironmentSetupError, ServiceStateError, ServiceUnavailable
from mlpipe.procutil import pid_alive

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class ServiceStatus:
    running: bool
    pid: int | None
    endpoint: str
    grpc_endpoint: str
    data_dir: Path
    log_file: Path


def _read_pid(settings: Settings) -> int | None:
    try:
        return int(settings.bq_pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def is_healthy(settings: Settings, timeout: float = 2.0) -> bool:
    """True when the REST API answers a dataset listing for the project."""
    url = f"{settings.bq_endpoint}/bigquery/v2/projects/{settings.project}/datasets"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            json.load(resp)
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def status(settings: Settings) -> ServiceStatus:
    pid = _read_pid(settings)
    running = pid is not None and pid_alive(pid)
    return ServiceStatus(
        running=running,
        pid=pid if running else None,
        endpoint=settings.bq_endpoint or "https://bigquery.googleapis.com",
        grpc_endpoint=settings.bq_grpc_endpoint,
        data_dir=settings.bq_data_dir,
        log_file=settings.bq_log_file,
    )


def start(settings: Settings) -> ServiceStatus:
    """Start the emulator in the background and wait until it answers; refuse to start twice."""
    if settings.bq_target != "local":
        raise ServiceStateError("bq start only manages the local service (bq_target is 'cloud')")
    binary = Path(settings.bq_emulator_bin)
    if not binary.exists():
        raise EnvironmentSetupError(
            f"the BigQuery emulator is not installed at {binary}; run `make setup` first"
        )
    pid = _read_pid(settings)
    if pid is not None:
        if pid_alive(pid):
            raise ServiceStateError(
                f"the local BigQuery service is already running (pid {pid}) at {settings.bq_endpoint}"
            )
        log.info("removing stale PID file for pid %d", pid)
        settings.bq_pid_file.unlink(missing_ok=True)
    for port in (settings.bq_port, settings.bq_grpc_port):
        if not _port_free(settings.bq_host, port):
            raise ServiceStateError(
                f"port {port} on {settings.bq_host} is already in use; stop what holds it or choose "
                "another port with MLPIPE_BQ_PORT / MLPIPE_BQ_GRPC_PORT"
            )
    settings.bq_data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.bq_log_file
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(binary), "serve",
        "--host", settings.bq_host,
        "--port", str(settings.bq_port),
        "--grpc-port", str(settings.bq_grpc_port),
        "--project", settings.project,
        "--data-dir", str(settings.bq_data_dir.resolve()),
    ]  # fmt: skip
    log.info("starting: %s", " ".join(cmd))
    with open(log_path, "ab") as log_fh:
        proc = subprocess.Popen(
            cmd,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the CLI process; stopped via the PID file
        )
    settings.bq_pid_file.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            settings.bq_pid_file.unlink(missing_ok=True)
            raise ServiceStateError(
                f"the BigQuery emulator exited with code {proc.returncode} during start; "
                f"last log lines:\n{_tail(log_path)}"
            )
        if is_healthy(settings):
            log.info("BigQuery emulator ready at %s (pid %d)", settings.bq_endpoint, proc.pid)
            return status(settings)
        time.sleep(0.25)
    _terminate(proc.pid)
    settings.bq_pid_file.unlink(missing_ok=True)
    raise ServiceStateError(
        f"the BigQuery emulator did not answer within {START_TIMEOUT_S:.0f}s; see {log_path}"
    )


def stop(settings: Settings) -> bool:
    """Stop the service if it runs; returns whether anything was stopped."""
    pid = _read_pid(settings)
    if pid is None:
        return False
    stopped = False
    if pid_alive(pid):
        _terminate(pid)
        stopped = True
    settings.bq_pid_file.unlink(missing_ok=True)
    return stopped


def ensure_running(settings: Settings) -> None:
    """Raise a one-line error saying how to start the service when it does not answer."""
    if settings.bq_target == "cloud" or is_healthy(settings):
        return
    raise ServiceUnavailable(
        f"BigQuery is not reachable at {settings.bq_endpoint}; start the local service with "
        "`mlpipe bq start` (or `make bq-start`)"
    )


def _terminate(pid: int) -> None:
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not pid_alive(pid):
                return
            time.sleep(0.1)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
