"""Where a FileRegistry keeps its files: the `Storage` interface and its local-directory backend.

`LocalStorage` is the registry's IO on a local directory tree, with atomic updates and one writer lock.

Every change becomes visible in one `os.rename`/`os.replace`, so readers never lock and never see a
half-written file or a half-copied SavedModel:
- JSON files are written to a temporary file, fsynced, then `os.replace`d over the old one;
- a SavedModel is copied into `MODEL/.staging/PID-RANDOM/`, fsynced, then renamed into place;
- a deleted version is first renamed into `MODEL/.trash/` and only then removed.
Writers serialize on `fcntl.flock` of `ROOT/.lock`, which the kernel releases if a writer dies.
Leftovers of a writer that died (staging dirs of dead PIDs, trash) are removed by the next writer.

Paths passed in are relative to the root and built from validated names only; `_abs` still refuses
anything that would leave the root.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import json
import logging
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlpipe.errors import DataIntegrityError, InvalidModelError, UsageError
from mlpipe.procutil import pid_alive

log = logging.getLogger(__name__)

STAGING = ".staging"
TRASH = ".trash"
LOCK_FILE = ".lock"


class Storage(abc.ABC):
    """A registry root: relative paths (built from validated names) in, files and directories out.

    Readers never lock; writers hold `lock()` and make each change visible in one step.
    """

    root: Any  # shown in messages: a local Path, or the URL of a remote root

    @abc.abstractmethod
    def uri(self, rel: str | Path) -> str:
        """Where `rel` lives, as the backend names it (a local path or a URL)."""

    @abc.abstractmethod
    def local_path(self, rel: str | Path) -> Path:
        """A local directory with the contents of `rel` (for handing a SavedModel to TensorFlow)."""

    @abc.abstractmethod
    def exists(self, rel: str | Path) -> bool: ...

    @abc.abstractmethod
    def list_dirs(self, rel: str | Path = ".") -> list[str]:
        """Names of visible sub-directories (not starting with '.'), sorted."""

    @abc.abstractmethod
    def read_json(self, rel: str | Path) -> Any | None:
        """Parsed JSON of `rel`, or None if it does not exist."""

    @abc.abstractmethod
    def write_json(self, rel: str | Path, data: Any) -> None:
        """Replace `rel` atomically with `data` as JSON."""

    @abc.abstractmethod
    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive writer lock for the whole registry."""

    @abc.abstractmethod
    def stage_copy(self, src: Path, parent: str | Path, name: str) -> Path:
        """Copy the local tree `src` to a staging area under `parent`; returns the staging handle."""

    @abc.abstractmethod
    def staging_rel(self, staging: Path, parent: str | Path) -> str:
        """The relative path of a staging area returned by `stage_copy`."""

    @abc.abstractmethod
    def publish(self, staging: Path, dest: str | Path) -> None:
        """Make a staging area visible as `dest` in one step; refuses to replace an existing `dest`."""

    @abc.abstractmethod
    def retire(self, rel: str | Path, parent: str | Path) -> None:
        """Make `rel` disappear in one step, then delete it."""

    @abc.abstractmethod
    def discard(self, staging: Path) -> None: ...

    @abc.abstractmethod
    def clean_leftovers(self, parent: str | Path) -> None:
        """Remove what writers that died left behind (call with the lock held)."""


class LocalStorage(Storage):
    """A registry root on the local filesystem."""

    def __init__(self, location: str | os.PathLike[str]) -> None:
        text = os.fspath(location)
        if "://" in text:
            raise UsageError(f"{text!r} is a URL, not a local directory; use mlpipe.registry.open_registry")
        self.root = Path(text).expanduser().absolute()
        # (inode, mtime_ns, size) → parsed JSON, so servers can re-read small files per request
        # for the cost of one stat(). os.replace always gives a new inode, so a change is never missed.
        self._json_cache: dict[Path, tuple[tuple[int, int, int], Any]] = {}
        self._cache_lock = threading.Lock()

    # ---- paths ----------------------------------------------------------------------------------

    def _abs(self, rel: str | Path) -> Path:
        path = (self.root / rel).absolute()
        if os.path.normpath(path) != str(path) or not path.is_relative_to(self.root):
            raise UsageError(f"path {str(rel)!r} is outside the registry root")
        return path

    def uri(self, rel: str | Path) -> str:
        return str(self._abs(rel))

    def local_path(self, rel: str | Path) -> Path:
        return self._abs(rel)

    def exists(self, rel: str | Path) -> bool:
        return self._abs(rel).exists()

    def list_dirs(self, rel: str | Path = ".") -> list[str]:
        """Names of visible sub-directories (not starting with '.'), sorted."""
        try:
            entries = list(os.scandir(self._abs(rel)))
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))

    # ---- JSON -----------------------------------------------------------------------------------

    def read_json(self, rel: str | Path) -> Any | None:
        """Parsed JSON of `rel`, or None if it does not exist. Cached until the file changes."""
        path = self._abs(rel)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._json_cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                data = json.load(fh)
        except FileNotFoundError:
            return None
        except (ValueError, RecursionError) as e:
            raise DataIntegrityError(
                f"{path} is corrupt ({type(e).__name__}: {str(e)[:80]}); restore it from a backup"
            ) from None
        with self._cache_lock:
            self._json_cache[path] = ((st.st_ino, st.st_mtime_ns, st.st_size), data)
        return data

    def write_json(self, rel: str | Path, data: Any) -> None:
        """Replace `rel` atomically with `data` as JSON."""
        path = self._abs(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    # ---- locking --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive writer lock for the whole registry (blocks until free)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_FILE, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # ---- directory trees ------------------------------------------------------------------------

    def stage_copy(self, src: Path, parent: str | Path, name: str) -> Path:
        """Copy the tree `src` to `PARENT/.staging/PID-RANDOM/NAME`; returns the staging dir.

        Nothing of it is visible until `publish`; on any error the staging dir is removed.
        """
        staging = self._abs(parent) / STAGING / f"{os.getpid()}-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            shutil.copytree(src, staging / name, symlinks=False)
            _fsync_tree(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    def staging_rel(self, staging: Path, parent: str | Path) -> str:
        return f"{Path(parent).as_posix()}/{STAGING}/{staging.name}"

    def publish(self, staging: Path, dest: str | Path) -> None:
        """Rename a staging dir to `dest` in one step; refuses to replace an existing `dest`."""
        target = self._abs(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise FileExistsError(f"{target} already exists")
        os.rename(staging, target)
        _fsync_dir(target.parent)

    def retire(self, rel: str | Path, parent: str | Path) -> None:
        """Make `rel` disappear in one rename (into `PARENT/.trash`), then delete it."""
        path = self._abs(rel)
        trash = self._abs(parent) / TRASH
        trash.mkdir(parents=True, exist_ok=True)
        dest = trash / f"{path.name}-{uuid.uuid4().hex}"
        os.rename(path, dest)
        _fsync_dir(path.parent)
        shutil.rmtree(dest, ignore_errors=True)

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def clean_leftovers(self, parent: str | Path) -> None:
        """Remove trash, staging dirs and temporary JSON files of writers that died (call with the
        lock held; every registry write does)."""
        base = self._abs(parent)
        shutil.rmtree(base / TRASH, ignore_errors=True)
        try:
            tmp_files = [e for e in os.scandir(base) if e.name.startswith(".") and e.name.endswith(".tmp")]
        except FileNotFoundError:
            return
        for entry in tmp_files:  # .state.json.PID-HEX.tmp of write_json
            pid = entry.name[: -len(".tmp")].rsplit(".", 1)[-1].split("-", 1)[0]
            if not (pid.isdigit() and pid_alive(int(pid))):
                log.info("removing leftover of an interrupted write: %s", entry.path)
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
        try:
            entries = list(os.scandir(base / STAGING))
        except FileNotFoundError:
            return
        for entry in entries:
            pid = entry.name.split("-", 1)[0]
            if not (pid.isdigit() and pid_alive(int(pid))):
                log.info("removing leftover of an interrupted push: %s", entry.path)
                shutil.rmtree(entry.path, ignore_errors=True)


def check_plain_tree(src: Path) -> None:
    """Refuse a tree holding anything but directories and regular files: a symlink would be copied as
    the file it points to (`assets/x -> /etc/hostname` would put that file into the registry), and a
    FIFO or device would block or fail the copy."""
    for dirpath, dirnames, filenames in os.walk(src):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                raise InvalidModelError(
                    f"{path.relative_to(src)} in {src} is a symlink (to {os.readlink(path)}); the "
                    "registry copies only regular files — copy the target in instead"
                )
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                raise InvalidModelError(
                    f"{path.relative_to(src)} in {src} is not a regular file (a FIFO, socket or device)"
                )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush copied files before the rename that publishes them, so a crash cannot expose
    a published version with truncated files."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))
