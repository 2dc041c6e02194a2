"""A registry root at a URL (`gs://BUCKET/registry`), read and written through `tf.io.gfile`.

`open_registry(root)` (mlpipe.registry) picks this backend for any root with a URL scheme, so the
cloud pipeline's Pusher, `mlpipe models … --registry-root gs://…` and the serving function all use
the same registry, with the local layout. `file://` and TensorFlow's in-memory `ram://` run the same
code offline.

Object storage has no atomic directory rename and no advisory lock, so the local backend's
guarantees are rebuilt from what it does have:
- **Single objects are replaced atomically.** A GCS upload becomes visible whole, as a new
  generation, or not at all. `write_json` still writes a temporary object and renames it over the
  target (one server-side copy), so file:// and ram:// (which stream writes) get the same guarantee.
- **A version appears in one step.** `publish` copies the staged SavedModel into `vN/` file by file
  and copies `version.json` last; readers treat a version directory without `version.json` as
  absent, so nobody sees a half-copied version. `retire` deletes `version.json` first.
- **One writer at a time**: `ROOT/.lock` is created with a create-only precondition (GCS:
  `ifGenerationMatch=0` through google-cloud-storage; file://: `O_CREAT|O_EXCL`; ram://, which is
  per-process: a process lock). It names its owner and expires after `LOCK_TTL_S`: a writer that
  died is broken out after that time (again under a generation precondition, so two breakers cannot
  both win). The guarantee: writers that use this lock are mutually exclusive as long as a holder
  finishes its critical section (state and version.json updates, the copy of one staged version)
  within the TTL; readers never lock and see the state before or after a change.
- `local_path()` must give TensorFlow and the model cache a local `Path`, so the first call for a
  directory (a version's SavedModel) copies it into a per-process mirror under the temp dir
  (in Cloud Functions: the instance's in-memory /tmp). A registry never reuses a version name, so a
  mirrored version stays valid for the life of the process; only versions that are loaded are copied.
- `read_json` reads the object on every call, without a cache: an object store's stat costs a
  request just like the small read, and file:// stats have only second resolution, so a cache
  validated by stat could miss a same-size change (a new default, `v1` → `v2`). TensorFlow's GCS
  stat cache (GCS_STAT_CACHE_MAX_AGE, 5 s by default) may still delay `exists` and listings.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import posixpath
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlpipe.errors import UsageError
from mlpipe.registry.storage import LOCK_FILE, STAGING, Storage

log = logging.getLogger(__name__)

# Registry URL → this process's mirror directory, shared by every storage object for that URL and
# removed when the process exits (an instance's /tmp is memory in Cloud Functions).
_MIRRORS: dict[str, Path] = {}
_MIRRORS_LOCK = threading.Lock()
# One lock per mirrored directory: concurrent first requests for a version copy it once.
_COPY_LOCKS: dict[Path, threading.Lock] = {}
# Cloud Storage; local files as URLs and TensorFlow's in-memory filesystem (the same code path
# without a cloud account).
SCHEMES = ("gs", "file", "ram")
# A lock older than this is considered abandoned by a writer that died.
LOCK_TTL_S = 600
# Written last when a version is published, removed first when it is deleted (file_registry.py).
VERSION_MARKER = "version.json"
# ram:// lives in this process only: its "create-only" is a process-wide lock.
_RAM_LOCK = threading.Lock()


class GfileStorage(Storage):
    """A registry root at a URL tf.io.gfile understands (gs://; file:// and ram:// offline)."""

    def __init__(self, location: str | os.PathLike[str]) -> None:
        text = os.fspath(location)
        if text.split("://", 1)[0] not in SCHEMES:
            raise UsageError(f"registry root {text!r}: not a {'/'.join(SCHEMES)} URL")
        import tensorflow as tf

        self._gfile = tf.io.gfile
        self.url = text.rstrip("/")
        # Shown in logs and messages, as the local backend's root is.
        self.root = self.url  # type: ignore[assignment]
        self.mirror = _mirror_dir(self.url)
        self._locks = ObjectLock(f"{self.url}/{LOCK_FILE}", self._gfile)

    # ---- paths ----------------------------------------------------------------------------------

    def _url(self, rel: str | Path) -> str:
        text = Path(rel).as_posix()
        norm = posixpath.normpath(text)
        if text.startswith("/") or norm == ".." or norm.startswith("../"):
            raise UsageError(f"path {text!r} is outside the registry root")
        return self.url if norm == "." else f"{self.url}/{norm}"

    def uri(self, rel: str | Path) -> str:
        return self._url(rel)

    def local_path(self, rel: str | Path) -> Path:
        """A local copy of `rel` (made on first use) for handing a SavedModel to TensorFlow."""
        url = self._url(rel)
        local = self.mirror / posixpath.normpath(Path(rel).as_posix())
        if local.exists():
            return local
        with _MIRRORS_LOCK:
            lock = _COPY_LOCKS.setdefault(local, threading.Lock())
        with lock:
            if not local.exists() and self._gfile.isdir(url):
                self._copy_tree(url, local)
        return local

    def exists(self, rel: str | Path) -> bool:
        return self._gfile.exists(self._url(rel))

    def list_dirs(self, rel: str | Path = ".") -> list[str]:
        url = self._url(rel)
        try:
            entries = self._gfile.listdir(url)
        except Exception as e:  # tf.errors.NotFoundError, or an object store's empty "directory"
            if _not_found(e):
                return []
            raise
        names = []
        for entry in entries:
            # Object stores mark directories with a trailing slash; local paths need a stat.
            name = entry.rstrip("/")
            if name.startswith("."):
                continue
            if entry.endswith("/") or self._gfile.isdir(f"{url}/{name}"):
                names.append(name)
        return sorted(names)

    # ---- JSON -----------------------------------------------------------------------------------

    def read_json(self, rel: str | Path) -> Any | None:
        """Parsed JSON of `rel`, or None if it does not exist; read afresh every time."""
        try:
            with self._gfile.GFile(self._url(rel), "rb") as fh:
                return json.loads(fh.read())
        except Exception as e:
            if _not_found(e):
                return None
            raise

    # ---- writing --------------------------------------------------------------------------------

    def write_json(self, rel: str | Path, data: Any) -> None:
        """Replace `rel` with `data` as JSON: a temporary object, renamed over the target."""
        url = self._url(rel)
        self._gfile.makedirs(posixpath.dirname(url))
        tmp = f"{posixpath.dirname(url)}/.{posixpath.basename(url)}.{uuid.uuid4().hex}.tmp"
        with self._gfile.GFile(tmp, "w") as fh:
            fh.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        try:
            self._gfile.rename(tmp, url, overwrite=True)
        finally:
            if self._gfile.exists(tmp):
                self._gfile.remove(tmp)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive writer lock on the whole registry: the `.lock` object (see the module docstring)."""
        token = self._locks.acquire()
        try:
            yield
        finally:
            self._locks.release(token)

    def stage_copy(self, src: Path, parent: str | Path, name: str) -> Path:
        """Upload the local tree `src` to `PARENT/.staging/<time>-<random>/NAME` (invisible to readers)."""
        staging = f"{self._url(parent)}/{STAGING}/{int(time.time())}-{uuid.uuid4().hex}"
        try:
            self._copy_local_tree(Path(src), f"{staging}/{name}")
        except BaseException:
            self._rmtree(staging)
            raise
        return Path(staging.split("://", 1)[1])  # a handle; `_staging_url` turns it back

    def staging_rel(self, staging: Path, parent: str | Path) -> str:
        return f"{Path(parent).as_posix()}/{STAGING}/{staging.name}"

    def publish(self, staging: Path, dest: str | Path) -> None:
        """Copy a staging area to `dest`, `version.json` last; refuses to replace an existing `dest`."""
        src, target = self._staging_url(staging), self._url(dest)
        if self._gfile.exists(target):
            raise FileExistsError(f"{target} already exists")
        files = [(d, f) for d, _dirs, names in self._gfile.walk(src) for f in names]
        files.sort(key=lambda df: (df[0] == src and df[1] == VERSION_MARKER, df[0], df[1]))
        for dirpath, name in files:
            sub = dirpath[len(src):].strip("/")
            out_dir = f"{target}/{sub}" if sub else target
            self._gfile.makedirs(out_dir)
            self._gfile.copy(f"{dirpath.rstrip('/')}/{name}", f"{out_dir}/{name}", overwrite=False)
        self._rmtree(src)

    def retire(self, rel: str | Path, parent: str | Path) -> None:
        """Delete `rel`: its `version.json` first (readers then treat it as absent), then the rest."""
        url = self._url(rel)
        marker = f"{url}/{VERSION_MARKER}"
        if self._gfile.exists(marker):
            self._gfile.remove(marker)
        self._rmtree(url)

    def discard(self, staging: Path) -> None:
        self._rmtree(self._staging_url(staging))

    def clean_leftovers(self, parent: str | Path) -> None:
        """Remove staging areas older than the lock's TTL (their writer is gone; PIDs mean nothing
        across machines) — call with the lock held."""
        base = f"{self._url(parent)}/{STAGING}"
        try:
            entries = self._gfile.listdir(base)
        except Exception as e:
            if _not_found(e):
                return
            raise
        for entry in entries:
            started = entry.rstrip("/").split("-", 1)[0]
            if started.isdigit() and time.time() - int(started) > LOCK_TTL_S:
                log.info("removing leftover of an interrupted push: %s/%s", base, entry)
                self._rmtree(f"{base}/{entry.rstrip('/')}")

    # ---- internals ------------------------------------------------------------------------------

    def _staging_url(self, staging: Path) -> str:
        return f"{self.url.split('://', 1)[0]}://{staging.as_posix()}"

    def _rmtree(self, url: str) -> None:
        if self._gfile.exists(url):
            if self._gfile.isdir(url):
                self._gfile.rmtree(url)
            else:
                self._gfile.remove(url)

    def _copy_local_tree(self, src: Path, url: str) -> None:
        for path in sorted(src.rglob("*")):
            target = f"{url}/{path.relative_to(src).as_posix()}"
            if path.is_dir():
                self._gfile.makedirs(target)
            else:
                self._gfile.makedirs(posixpath.dirname(target))
                self._gfile.copy(str(path), target, overwrite=True)

    def _copy_tree(self, url: str, local: Path) -> None:
        """Copy a remote directory next to `local`, then rename it into place: a reader never sees
        a half-copied SavedModel, and a failed copy leaves nothing behind."""
        local.parent.mkdir(parents=True, exist_ok=True)
        staging = local.parent / f".{local.name}.{os.getpid()}-{uuid.uuid4().hex}"
        try:
            for dirpath, _dirs, files in self._gfile.walk(url):
                sub = dirpath[len(url):].strip("/")
                target = staging / sub if sub else staging
                target.mkdir(parents=True, exist_ok=True)
                for name in files:
                    self._gfile.copy(f"{dirpath.rstrip('/')}/{name}", str(target / name), overwrite=True)
            os.rename(staging, local)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("mirrored %s to %s", url, local)


def _mirror_dir(url: str) -> Path:
    with _MIRRORS_LOCK:
        if url not in _MIRRORS:
            path = Path(tempfile.mkdtemp(prefix="mlpipe-registry-mirror-"))
            atexit.register(shutil.rmtree, path, ignore_errors=True)
            _MIRRORS[url] = path
        return _MIRRORS[url]


def _not_found(e: Exception) -> bool:
    import tensorflow as tf

    return isinstance(e, (tf.errors.NotFoundError, FileNotFoundError))


class LockBusy(Exception):
    """The lock object exists and is held by someone else."""


class ObjectLock:
    """`.lock` as an object created only if absent (see the module docstring for the guarantees)."""

    def __init__(self, url: str, gfile: Any, ttl_s: float = LOCK_TTL_S, poll_s: float = 0.5) -> None:
        self.url, self._gfile, self.ttl_s, self.poll_s = url, gfile, ttl_s, poll_s
        self.scheme = url.split("://", 1)[0]

    def acquire(self, timeout_s: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else 2 * self.ttl_s)
        body = json.dumps({"owner": f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}",
                           "expires": time.time() + self.ttl_s})
        while True:
            try:
                return self._create(body)
            except LockBusy:
                self._break_if_expired()
            if time.monotonic() > deadline:
                raise UsageError(f"the registry lock {self.url} is held by another writer "
                                 f"({self._describe()}); try again later")
            time.sleep(self.poll_s)

    def release(self, token: Any) -> None:
        if self.scheme == "gs":
            from google.api_core import exceptions as gexc

            try:
                self._blob().delete(if_generation_match=token)
            except gexc.PreconditionFailed:  # broken out as expired and taken by another writer
                log.warning("registry lock %s was taken over while held", self.url)
            except gexc.NotFound:
                pass
            return
        with contextlib.suppress(Exception):
            if self._read() == token:
                self._gfile.remove(self.url)

    # ---- per scheme -------------------------------------------------------------------------------

    def _create(self, body: str) -> Any:
        """Create the lock object iff absent; returns what `release` needs, or raises LockBusy."""
        if self.scheme == "gs":
            from google.api_core import exceptions as gexc

            blob = self._blob()
            try:
                blob.upload_from_string(body, content_type="application/json", if_generation_match=0)
            except gexc.PreconditionFailed:
                raise LockBusy() from None
            return blob.generation
        if self.scheme == "file":
            path = self.url[len("file://"):]
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                raise LockBusy() from None
            with os.fdopen(fd, "w") as fh:
                fh.write(body)
            return body
        with _RAM_LOCK:
            if self._gfile.exists(self.url):
                raise LockBusy()
            with self._gfile.GFile(self.url, "w") as fh:
                fh.write(body)
            return body

    def _break_if_expired(self) -> None:
        if self.scheme == "gs":
            from google.api_core import exceptions as gexc

            blob = self._blob()
            try:
                blob.reload()
                data = json.loads(blob.download_as_bytes(if_generation_match=blob.generation))
                if data.get("expires", 0) < time.time():
                    log.warning("breaking the expired registry lock %s (%s)", self.url, data.get("owner"))
                    blob.delete(if_generation_match=blob.generation)
            except (gexc.NotFound, gexc.PreconditionFailed, ValueError):
                pass
            return
        with _RAM_LOCK:
            text = self._read()
            if text is None:
                return
            try:
                expired = json.loads(text).get("expires", 0) < time.time()
            except ValueError:
                expired = True
            if expired:
                log.warning("breaking the expired registry lock %s", self.url)
                with contextlib.suppress(Exception):
                    self._gfile.remove(self.url)

    def _read(self) -> str | None:
        try:
            with self._gfile.GFile(self.url) as fh:
                return fh.read()
        except Exception as e:
            if _not_found(e):
                return None
            raise

    def _describe(self) -> str:
        if self.scheme == "gs":
            with contextlib.suppress(Exception):
                return self._blob().download_as_text()
            return "unknown owner"
        return self._read() or "released"

    def _blob(self) -> Any:
        from google.cloud import storage

        bucket, _, name = self.url[len("gs://"):].partition("/")
        return storage.Client().bucket(bucket).blob(name)
