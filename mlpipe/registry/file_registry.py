"""The registry as files: versions `v1, v2, …`, one default, named aliases; AI Platform semantics.

`FileRegistry` implements the `Registry` seam (api.py) on a `Storage` (a local directory, or a bucket
read through tf.io.gfile). Layout under the root (see storage.py for how each change is made atomic):
    .lock                                   writers' flock
    MODEL/state.json                        {"default": "v2", "aliases": {...}, "next_number": 3}
    MODEL/versions/vN/version.json          name, created time, signatures, PushMetadata
    MODEL/versions/vN/saved_model/          the SavedModel, copied in

Version numbers are never reused (even after a delete), so a name always means the same model —
which lets servers and prediction logs key on it. A version exists once state.json records it
(its number is below `next_number`): a push killed after renaming its directory into place but
before writing the state left a directory no reader sees, which the next push removes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlpipe.errors import NotFoundError, RegistryConflictError, UsageError
from mlpipe.registry.api import VersionInfo
from mlpipe.registry.metadata import PushMetadata
from mlpipe.registry.names import validate_name, version_name, version_number
from mlpipe.registry.signature_check import check_contract
from mlpipe.registry.storage import Storage, check_plain_tree

log = logging.getLogger(__name__)

SAVED_MODEL = "saved_model"


@dataclass
class _State:
    default: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    next_number: int = 1

    @classmethod
    def from_json(cls, data: Any) -> _State:
        if not isinstance(data, dict):
            return cls()
        return cls(data.get("default"), dict(data.get("aliases", {})), int(data.get("next_number", 1)))

    def records(self, version: str) -> bool:
        """Whether state.json has recorded `version`: a push publishes the version directory, then
        writes the state; a version numbered at or above `next_number` is a push that died between."""
        number = version_number(version)
        return number is None or number < self.next_number

    def to_json(self) -> dict[str, Any]:
        return {"default": self.default, "aliases": self.aliases, "next_number": self.next_number}

    def aliases_of(self, version: str) -> tuple[str, ...]:
        return tuple(sorted(a for a, v in self.aliases.items() if v == version))


class FileRegistry:
    """The versions of one model in a registry root; open one with `mlpipe.registry.open_registry`."""

    def __init__(self, storage: Storage, model: str) -> None:
        self.storage = storage
        self.model = validate_name("model", model)

    @property
    def location(self) -> str:
        return str(self.storage.root)

    def for_model(self, model: str) -> FileRegistry:
        """The same registry root, another model."""
        return FileRegistry(self.storage, model)

    # ---- reading --------------------------------------------------------------------------------

    def list_models(self) -> list[str]:
        return [m for m in self.storage.list_dirs() if _valid(m) and self.storage.exists(f"{m}/state.json")]

    def exists(self) -> bool:
        return self.storage.exists(self._state_path)

    def list_versions(self) -> list[VersionInfo]:
        """All versions, oldest first."""
        state = self._state()
        infos = []
        for name in self.storage.list_dirs(f"{self.model}/versions"):
            if _valid(name):
                info = self._read_version(name, state)
                if info is not None:
                    infos.append(info)
        return sorted(infos, key=lambda i: (i.number or 0, i.name))

    def get(self, version: str) -> VersionInfo:
        validate_name("version", version)
        info = self._read_version(version, self._state())
        if info is None:
            self._require_model()
            raise NotFoundError(f"model {self.model!r} has no version {version!r}")
        return info

    def default_version(self) -> str | None:
        return self._state().default

    def aliases(self) -> dict[str, str]:
        return dict(self._state().aliases)

    def resolve(self, version: str | None = None, alias: str | None = None) -> VersionInfo:
        """The version named `version`, or the target of `alias`, or (neither) the default."""
        if version is not None and alias is not None:
            raise UsageError("give a version or an alias, not both")
        if version is not None:
            return self.get(version)
        state = self._state()
        if alias is not None:
            validate_name("alias", alias)
            target = state.aliases.get(alias)
            if target is None:
                self._require_model()
                raise NotFoundError(f"model {self.model!r} has no alias {alias!r}")
            return self.get(target)
        if state.default is None:
            self._require_model()
            raise NotFoundError(f"model {self.model!r} has no versions; push one first")
        return self.get(state.default)

    def local_saved_model(self, info: VersionInfo) -> Path:
        model, version = validate_name("model", info.model), validate_name("version", info.name)
        return self.storage.local_path(f"{model}/versions/{version}/{SAVED_MODEL}")

    # ---- writing --------------------------------------------------------------------------------

    def push(
        self,
        saved_model_dir: str | Path,
        metadata: PushMetadata | Mapping[str, Any] | None = None,
        promote: bool = True,
    ) -> VersionInfo:
        """Copy a SavedModel in as the next version `vN`; it becomes the default if `promote` or if
        it is the model's first version. Nothing is visible until the copy is complete."""
        src = Path(saved_model_dir)
        if not src.is_dir():
            raise NotFoundError(f"SavedModel directory {src} does not exist")
        check_plain_tree(src)
        signatures = check_contract(src)
        meta = metadata if isinstance(metadata, PushMetadata) else PushMetadata.from_dict(metadata or {})
        staging = self.storage.stage_copy(src, self.model, SAVED_MODEL)
        try:
            with self.storage.lock():
                self.storage.clean_leftovers(self.model)
                state = self._state()
                self._retire_unrecorded(state)
                existing = [version_number(n) or 0 for n in self.storage.list_dirs(self._versions)]
                number = max([state.next_number, *(n + 1 for n in existing)])
                name = version_name(number)
                record = {
                    "model": self.model,
                    "name": name,
                    "created_time": _now(),
                    "signatures": signatures,
                    "metadata": meta.to_dict(),
                }
                self.storage.write_json(f"{self.storage.staging_rel(staging, self.model)}/version.json", record)
                self.storage.publish(staging, self._version_dir(name))
                first = state.default is None or not self.storage.exists(self._version_dir(state.default))
                new_state = _State(name if (promote or first) else state.default, state.aliases, number + 1)
                try:
                    self._write_state(new_state)
                except BaseException:
                    self.storage.retire(self._version_dir(name), self.model)
                    raise
        finally:
            self.storage.discard(staging)
        log.info("pushed %s/%s%s", self.model, name, " (default)" if new_state.default == name else "")
        return self.get(name)

    def set_default(self, version: str) -> VersionInfo:
        """Make `version` the default (also the way to roll back to an older version)."""
        validate_name("version", version)
        with self.storage.lock():
            self.storage.clean_leftovers(self.model)
            state = self._state()
            self._require_version(version)
            state.default = version
            self._write_state(state)
        return self.get(version)

    def set_alias(self, alias: str, version: str) -> VersionInfo:
        validate_name("alias", alias)
        validate_name("version", version)
        with self.storage.lock():
            self.storage.clean_leftovers(self.model)
            state = self._state()
            self._require_version(version)
            state.aliases[alias] = version
            self._write_state(state)
        return self.get(version)

    def remove_alias(self, alias: str) -> str:
        """Drop `alias`; returns the version it pointed at."""
        validate_name("alias", alias)
        with self.storage.lock():
            self.storage.clean_leftovers(self.model)
            state = self._state()
            if alias not in state.aliases:
                self._require_model()
                raise NotFoundError(f"model {self.model!r} has no alias {alias!r}")
            target = state.aliases.pop(alias)
            self._write_state(state)
        return target

    def delete(self, version: str) -> None:
        """Delete a version. Refused for the default (unless it is the only version) and for a
        version an alias points at: serving must never lose the model it answers with."""
        validate_name("version", version)
        with self.storage.lock():
            self.storage.clean_leftovers(self.model)
            state = self._state()
            self._require_version(version)
            others = [v for v in self.storage.list_dirs(self._versions) if v != version and state.records(v)]
            if state.default == version and others:
                raise RegistryConflictError(
                    f"{version} is the default version of model {self.model!r}; make another "
                    f"version the default first (`mlpipe models set-default VERSION`)"
                )
            aliased = state.aliases_of(version)
            if aliased:
                raise RegistryConflictError(
                    f"{version} is the target of alias(es) {', '.join(aliased)}; move or remove "
                    "them first (`mlpipe models alias NAME VERSION` / `--remove`)"
                )
            if state.default == version:
                state.default = None
            # State first: if removing the files fails, what remains is an unreferenced version.
            self._write_state(state)
            self.storage.retire(self._version_dir(version), self.model)
        log.info("deleted %s/%s", self.model, version)

    # ---- internals ------------------------------------------------------------------------------

    @property
    def _state_path(self) -> str:
        return f"{self.model}/state.json"

    @property
    def _versions(self) -> str:
        return f"{self.model}/versions"

    def _version_dir(self, version: str) -> str:
        return f"{self._versions}/{version}"

    def _state(self) -> _State:
        return _State.from_json(self.storage.read_json(self._state_path))

    def _write_state(self, state: _State) -> None:
        self.storage.write_json(self._state_path, state.to_json())

    def _read_version(self, version: str, state: _State) -> VersionInfo | None:
        if not state.records(version):
            return None  # published by a push that died before recording it: not a version
        record = self.storage.read_json(f"{self._version_dir(version)}/version.json")
        if not isinstance(record, dict):
            return None
        return VersionInfo(
            model=self.model,
            name=version,
            created_time=record.get("created_time", ""),
            saved_model_uri=self.storage.uri(f"{self._version_dir(version)}/{SAVED_MODEL}"),
            metadata=PushMetadata.from_dict(record.get("metadata", {})),
            signatures=record.get("signatures", {}),
            is_default=state.default == version,
            aliases=state.aliases_of(version),
        )

    def _retire_unrecorded(self, state: _State) -> None:
        """Remove version directories that a push killed after publishing left unrecorded (lock held)."""
        for name in self.storage.list_dirs(self._versions):
            if _valid(name) and not state.records(name):
                log.info("removing %s/%s, published by a push that died before recording it", self.model, name)
                self.storage.retire(self._version_dir(name), self.model)

    def _require_model(self) -> None:
        if not self.exists():
            raise NotFoundError(f"model {self.model!r} not found in the registry at {self.storage.root}")

    def _require_version(self, version: str) -> None:
        recorded = self._state().records(version)
        if not (recorded and self.storage.exists(f"{self._version_dir(version)}/version.json")):
            self._require_model()
            raise NotFoundError(f"model {self.model!r} has no version {version!r}")


def _valid(name: str) -> bool:
    try:
        validate_name("name", name)
    except UsageError:
        return False
    return True


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
