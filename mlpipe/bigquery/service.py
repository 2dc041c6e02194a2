"""Start, stop and inspect the local BigQuery emulator (`local-bigquery`) as a background service.

The emulator needs Python ≥ 3.13, so it lives in its own venv (`.venv-bq/`) and runs as a separate
process: REST on `bq_port`, Storage Read API (gRPC) on `bq_grpc_port`, both bound to 127.0.0.1,
through `emulator_main.py`, which fences DuckDB's file access to the data directory.

The PID file records the process's PID, its start time (/proc/PID/stat, clock ticks since boot) and
command line. `stop` and `status` trust a PID only if all three still match: a PID file naming some
other process (a recycled PID, a hand-edited file, `0` or a negative number) is removed as stale and
nothing is signalled.
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
PORT_WAIT_S = 5.0


@dataclass(frozen=True)
class ServiceStatus:
    running: bool
    pid: int | None
    endpoint: str
    grpc_endpoint: str
    data_dir: Path
    log_file: Path


LAUNCHER = Path(__file__).with_name("emulator_main.py")


@dataclass(frozen=True)
class _PidRecord:
    pid: int
    start_ticks: int | None
    cmdline: tuple[str, ...]


def _proc_start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _proc_cmdline(pid: int) -> tuple[str, ...]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return tuple(a.decode(errors="replace") for a in f.read().split(b"\0") if a)
    except OSError:
        return ()


def _read_record(settings: Settings) -> _PidRecord | None:
    """The PID file, or None if there is none or it is unreadable (then it is removed)."""
    try:
        text = settings.bq_pid_file.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ServiceStateError(f"cannot read {settings.bq_pid_file}: {e.strerror}") from None
    try:
        doc = json.loads(text)
        if isinstance(doc, int):  # a PID file of an older mlpipe: a bare number
            doc = {"pid": doc}
        record = _PidRecord(int(doc["pid"]), doc.get("start_ticks"), tuple(doc.get("cmdline", ())))
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("removing unreadable PID file %s", settings.bq_pid_file)
        settings.bq_pid_file.unlink(missing_ok=True)
        return None
    return record


def _is_our_emulator(record: _PidRecord, settings: Settings) -> bool:
    """True only for a live process with the recorded start time running the emulator on our port."""
    if record.pid <= 1 or not pid_alive(record.pid):
        return False
    if record.start_ticks is not None and _proc_start_ticks(record.pid) != record.start_ticks:
        return False
    cmdline = _proc_cmdline(record.pid)
    if record.cmdline and cmdline != record.cmdline:
        return False
    runs_emulator = any(a.endswith(("local-bigquery", LAUNCHER.name)) for a in cmdline)
    return runs_emulator and str(settings.bq_port) in cmdline


def _read_pid(settings: Settings) -> int | None:
    """The emulator's PID if the PID file names our running emulator; a stale file is removed."""
    record = _read_record(settings)
    if record is None:
        return None
    if _is_our_emulator(record, settings):
        return record.pid
    log.info("removing stale PID file %s (pid %d is not this emulator)", settings.bq_pid_file, record.pid)
    settings.bq_pid_file.unlink(missing_ok=True)
    return None


def _write_record(settings: Settings, pid: int) -> None:
    record = {"pid": pid, "start_ticks": _proc_start_ticks(pid), "cmdline": list(_proc_cmdline(pid))}
    tmp = settings.bq_pid_file.with_name(settings.bq_pid_file.name + ".tmp")
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, settings.bq_pid_file)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _port_free_soon(host: str, port: int, wait: float = PORT_WAIT_S) -> bool:
    """The port is free, or becomes free within `wait` seconds (the sockets of an emulator stopped a
    moment ago can hold it briefly)."""
    deadline = time.monotonic() + wait
    while not _port_free(host, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
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
    return ServiceStatus(
        running=pid is not None,
        pid=pid,
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
    pid = _read_pid(settings)  # a stale PID file is removed here
    if pid is not None:
        raise ServiceStateError(
            f"the local BigQuery service is already running (pid {pid}) at {settings.bq_endpoint}"
        )
    python = binary.with_name("python")
    if not python.exists():
        raise EnvironmentSetupError(f"the emulator's Python is missing at {python}; run `make setup`")
    for port in (settings.bq_port, settings.bq_grpc_port):
        if not _port_free_soon(settings.bq_host, port):
            raise ServiceStateError(
                f"port {port} on {settings.bq_host} is already in use; stop what holds it or choose "
                "another port with MLPIPE_BQ_PORT / MLPIPE_BQ_GRPC_PORT"
            )
    settings.bq_data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.bq_log_file
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(python), str(LAUNCHER), "serve",
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
    _write_record(settings, proc.pid)
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
    """Stop the service if it runs; returns whether anything was stopped. Only a process verified
    to be the emulator this state dir started is signalled (see the module docstring)."""
    pid = _read_pid(settings)
    if pid is None:
        return False
    _terminate(pid)
    settings.bq_pid_file.unlink(missing_ok=True)
    return True


# A running emulator that is busy (one heavy query, a loaded machine) can take longer than a health
# check's 2 s to answer; a refused connection means nothing listens, so only that fails at once.
PATIENCE_S = 20.0


def ensure_running(settings: Settings, patience: float = PATIENCE_S) -> None:
    """Raise a one-line error saying how to start the service when it does not answer: at once when
    the connection is refused, after `patience` seconds when something listens but does not answer."""
    if settings.bq_target == "cloud" or is_healthy(settings):
        return
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline and not _port_free(settings.bq_host, settings.bq_port):
        if is_healthy(settings, timeout=5.0):
            return
        time.sleep(0.5)
    raise ServiceUnavailable(
        f"BigQuery is not reachable at {settings.bq_endpoint}; start the local service with "
        "`mlpipe bq start` (or `make bq-start`)"
    )


def _terminate(pid: int) -> None:
    if pid <= 1:  # 0 and -1 would signal our own group or every process we may signal
        raise ServiceStateError(f"refusing to signal pid {pid}")
    try:
        own_group = os.getpgid(pid) == pid  # started with start_new_session: leads its group
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        try:
            if own_group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return
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
