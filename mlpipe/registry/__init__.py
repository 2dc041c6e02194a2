"""Versioned model registry (versions, default, aliases, metadata); `open_registry` picks the backend."""

from __future__ import annotations

from mlpipe.config import Settings
from mlpipe.errors import UsageError
from mlpipe.registry.api import Registry, VersionInfo
from mlpipe.registry.metadata import PushMetadata
from mlpipe.registry.names import validate_name
from mlpipe.registry.rollout import AuditEntry, Rollout


def open_registry(location: str | object, model: str) -> Registry:
    """The registry at `location` (a local directory, or a `gs://` / `file://` URL), for `model`."""
    from mlpipe.registry.file_registry import FileRegistry

    text = str(location)
    scheme = text.split("://", 1)[0] if "://" in text else ""
    if not scheme:
        from mlpipe.registry.storage import LocalStorage

        return FileRegistry(LocalStorage(text), model)
    from mlpipe.registry.gfile_storage import SCHEMES, GfileStorage

    if scheme in SCHEMES:
        return FileRegistry(GfileStorage(text), model)
    raise UsageError(
        f"registry root {text!r}: only local directories and gs:// URIs are supported; "
        "set MLPIPE_REGISTRY_ROOT / --registry-root to one"
    )


def registry_for(settings: Settings, model: str | None = None) -> Registry:
    """The registry the settings name (`registry_location`, `model_name`)."""
    return open_registry(settings.registry_location, model or settings.model_name)


__all__ = [
    "AuditEntry", "PushMetadata", "Registry", "Rollout", "VersionInfo", "open_registry", "registry_for",
    "validate_name",
]
