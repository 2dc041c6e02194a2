"""One pipeline run per state directory at a time.

Two runs on one state dir would share the pipeline root, the ML Metadata store and the registry: both
would push the same model, and each could report the other's run. `run_lock` holds an exclusive `fcntl`
lock on `Settings.run_lock_file` for the whole run; the kernel drops it when the process ends, however it
ends, so a killed run never leaves a stale lock. The file's text (pid, start time, run id) is only what the
refusal message quotes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone

from mlpipe.config import Settings
from mlpipe.display import display_path
from mlpipe.errors import ServiceStateError


class RunInProgressError(ServiceStateError):
    """Another pipeline run holds this state directory."""


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "pid unknown"


@contextlib.contextmanager
def run_lock(settings: Settings, run_id: str = "") -> Iterator[None]:
    """Hold the state dir's run lock, or raise RunInProgressError naming the run that holds it."""
    path = settings.run_lock_file
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            raise RunInProgressError(
                f"another run ({holder}) is in progress in {display_path(settings.state_dir)}; "
                "wait for it to finish (one run per state dir at a time)"
            ) from None
        started = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "started": started, "run_id": run_id}).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
