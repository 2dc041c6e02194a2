"""The registry seam: what the Pusher, the baseline resolver, serving, the CLI and lineage may ask of a
model registry, whatever keeps the models.

`open_registry(location, model)` (mlpipe.registry) picks the backend from the location: a local
directory or a bucket URL gives a `FileRegistry` (versions as files on a `Storage`); a managed
registry (Vertex AI Model Registry) would be another class with these methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlpipe.errors import UsageError
from mlpipe.registry.metadata import PushMetadata
from mlpipe.registry.names import version_number
from mlpipe.registry.rollout import AuditEntry, Rollout


@dataclass(frozen=True)
class VersionInfo:
    model: str
    name: str
    created_time: str  # RFC 3339, UTC
    saved_model_uri: str  # where the backend keeps the SavedModel: a local path or a URL
    metadata: PushMetadata
    signatures: Mapping[str, Any]
    is_default: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def number(self) -> int | None:
        return version_number(self.name)

    @property
    def is_local(self) -> bool:
        return "://" not in self.saved_model_uri

    @property
    def saved_model_dir(self) -> Path:
        """The SavedModel directory of a local registry; for a remote one, `Registry.local_saved_model`."""
        if not self.is_local:
            raise UsageError(f"{self.saved_model_uri} is remote; use the registry's local_saved_model()")
        return Path(self.saved_model_uri)


class Registry(Protocol):
    """The versions of one model: `v1, v2, …` (never reused), one default, named aliases."""

    model: str

    @property
    def location(self) -> str:
        """Where the registry lives, for messages (a directory or a URL)."""

    def for_model(self, model: str) -> Registry:
        """The same registry, another model."""

    # ---- reading --------------------------------------------------------------------------------
    def list_models(self) -> list[str]: ...
    def exists(self) -> bool: ...
    def list_versions(self) -> list[VersionInfo]:
        """All versions, oldest first."""
    def get(self, version: str) -> VersionInfo: ...
    def default_version(self) -> str | None: ...
    def aliases(self) -> dict[str, str]: ...
    def resolve(self, version: str | None = None, alias: str | None = None) -> VersionInfo:
        """The version named `version`, or the target of `alias`, or (neither) the default."""
    def rollout(self) -> Rollout | None:
        """The challenger beside the default (canary share or shadow), if any."""
    def audit(self) -> list[AuditEntry]:
        """Changes to the default and the challenger (who, when, why, metrics), oldest first."""
    def local_saved_model(self, info: VersionInfo) -> Path:
        """A local directory holding the version's SavedModel (copied in first if the registry is remote)."""

    # ---- writing --------------------------------------------------------------------------------
    def push(self, saved_model_dir: str | Path, metadata: PushMetadata | Mapping[str, Any] | None = None,
             promote: bool = True, challenger: Rollout | None = None,
             actor: str | None = None) -> VersionInfo: ...
    def set_default(self, version: str, actor: str | None = None, reason: str = "") -> VersionInfo: ...
    def promote(self, actor: str | None = None, reason: str = "") -> VersionInfo: ...
    def rollback(self, to: str | None = None, actor: str | None = None, reason: str = "") -> VersionInfo: ...
    def set_challenger(self, version: str, share: float = 0.1, mode: str = "canary",
                       actor: str | None = None, reason: str = "") -> Rollout: ...
    def clear_challenger(self, actor: str | None = None, reason: str = "") -> str: ...
    def set_alias(self, alias: str, version: str) -> VersionInfo: ...
    def remove_alias(self, alias: str) -> str: ...
    def delete(self, version: str, actor: str | None = None) -> None: ...
