"""Is a model already in the registry? By content digest, or (older versions without one) by the ML
Metadata id of its Model artifact.

A re-run whose Trainer was cached hands the Pusher the very model the registry already serves; pushing
it again would make a "new" version identical to an old one (and a rollback to the old one would change
nothing). The Pusher asks `find_same_model` first and pushes only a model the registry does not have.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mlpipe.registry.api import Registry, VersionInfo

DIGEST_KEY = "model_digest"  # under PushMetadata.extra
# Custom properties of the Pusher's PushedModel when the blessed model was already in the registry.
ALREADY_VERSION_PROPERTY = "already_registered_version"
ALREADY_DEFAULT_PROPERTY = "already_registered_default"


def model_digest(saved_model_dir: str | Path) -> str:
    """sha256 over every file of the directory (relative path and bytes), in sorted order."""
    root = Path(saved_model_dir)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            h.update(str(path.relative_to(root)).encode() + b"\0")
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
    return "sha256:" + h.hexdigest()


def find_same_model(registry: Registry, digest: str, model_artifact_id: int | None = None) -> VersionInfo | None:
    """The version holding this model, the default first if several do; None if the model is new."""
    if not registry.exists():
        return None
    same = []
    for v in registry.list_versions():
        recorded = v.metadata.extra.get(DIGEST_KEY)
        if recorded == digest or (
            recorded is None and model_artifact_id is not None and v.metadata.model_artifact_id == model_artifact_id
        ):
            same.append(v)
    if not same:
        return None
    return next((v for v in same if v.is_default), same[0])
