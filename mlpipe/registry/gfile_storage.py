"""A read-only registry root at a URL (`gs://BUCKET/registry`), read through `tf.io.gfile`.

`open_registry(root)` (mlpipe.registry) picks this backend for any root with a URL scheme, so the
registry and the serving function take a `gs://` root unchanged. The layout is the local one; a
registry is published to Cloud Storage by copying a local root
(`gcloud storage rsync --recursive .mlpipe/registry gs://BUCKET/registry`).

What differs from the local backend, and why:
- Read-only: Cloud Storage has no rename and no lock, so the atomic writes of storage.py cannot be
  made here; every write raises UsageError (an HTTP 400 from the server).
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
import json
import logging
import os
import posixpath
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlpipe.errors import UsageError
from mlpipe.registry.storage import Storage

log = logging.getLogger(__name__)

# Registry URL → this process's mirror directory, shared by every storage object for that URL and
# removed when the process exits (an instance's /tmp is memory in Cloud Functions).
_MIRRORS: dict[str, Path] = {}
_MIRRORS_LOCK = threading.Lock()
# One lock per mirrored directory: concurrent first requests for a version copy it once.
_COPY_LOCKS: dict[Path, threading.Lock] = {}
# Cloud Storage, and local files as URLs (the same code path without a cloud account).
SCHEMES = ("gs", "file")


class GfileStorage(Storage):
    """A registry root at a URL tf.io.gfile understands (gs://, and file:// for tests)."""

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

    # ---- writing: not here ----------------------------------------------------------------------

    def _read_only(self) -> UsageError:
        return UsageError(
            f"the registry at {self.url} is read-only here; change it in a local registry "
            "(mlpipe models ...) and copy it to Cloud Storage"
        )

    def write_json(self, rel: str | Path, data: Any) -> None:
        raise self._read_only()

    def lock(self) -> Iterator[None]:
        raise self._read_only()

    def stage_copy(self, src: Path, parent: str | Path, name: str) -> Path:
        raise self._read_only()

    def staging_rel(self, staging: Path, parent: str | Path) -> str:
        raise self._read_only()

    def publish(self, staging: Path, dest: str | Path) -> None:
        raise self._read_only()

    def retire(self, rel: str | Path, parent: str | Path) -> None:
        raise self._read_only()

    def discard(self, staging: Path) -> None:
        raise self._read_only()

    def clean_leftovers(self, parent: str | Path) -> None:
        raise self._read_only()

    # ---- internals ------------------------------------------------------------------------------

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
