"""The registry as files: versions `v1, v2, …`, one default, named aliases; AI Platform semantics.

`FileRegistry` implements the `Registry` seam (api.py) on a `Storage` (a local directory, or a bucket
read through tf.io.gfile). Layout under the root (see storage.py for how each change is made atomic):
    .lock                                   writers' flock
    MODEL/state.json                        {"default": "v2", "aliases": {...}, "next_number": 3,
                                             "challenger": {...}, "history": [audit entries]}
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
from mlpipe.registry.rollout import MAX_AUDIT_ENTRIES, AuditEntry, Rollout, default_actor
from mlpipe.registry.signature_check import check_contract
from mlpipe.registry.storage import Storage, check_plain_tree

log = logging.getLogger(__name__)

SAVED_MODEL = "saved_model"


@dataclass
class _State:
    default: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    next_number: int = 1
    challenger: Rollout | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Any) -> _State:
        if not isinstance(data, dict):
            return cls()
        history = data.get("history")
        return cls(data.get("default"), dict(data.get("aliases", {})), int(data.get("next_number", 1)),
                   Rollout.from_json(data.get("challenger")),
                   list(history) if isinstance(history, list) else [])

    def records(self, version: str) -> bool:
        """Whether state.json has recorded `version`: a push publishes the version directory, then
        writes the state; a version numbered at or above `next_number` is a push that died between."""
        number = version_number(version)
        return number is None or number < self.next_number

    def to_json(self) -> dict[str, Any]:
        return {"default": self.default, "aliases": self.aliases, "next_number": self.next_number,
                "challenger": self.challenger.to_json() if self.challenger else None,
                "history": self.history[-MAX_AUDIT_ENTRIES:]}

    def record(self, action: str, version: str | None, actor: str | None, reason: str = "",
               previous: str | None = None, **details: Any) -> None:
        entry = AuditEntry(_now(), action, version, previous, actor or default_actor(), reason,
                           {k: v for k, v in details.items() if v is not None})
        self.history.append(entry.to_json())

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

    def rollout(self) -> Rollout | None:
        """The challenger beside the default, if any."""
        return self._state().challenger

    def audit(self) -> list[AuditEntry]:
        """Changes to the default and the challenger, oldest first."""
        entries = (AuditEntry.from_json(e) for e in self._state().history)
        return [e for e in entries if e is not None]

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
        challenger: Rollout | None = None,
        actor: str | None = None,
    ) -> VersionInfo:
        """Copy a SavedModel in as the next version `vN`; it becomes the default if `promote` or if
        it is the model's first version, else (with `challenger`, whose version is ignored) the
        challenger. Nothing is visible until the copy is complete."""
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
                becomes_default = first or (promote and challenger is None)
                new_state = _State(name if becomes_default else state.default, state.aliases, number + 1,
                                   state.challenger, state.history)
                new_state.record("push", name, actor, previous=state.default if becomes_default else None,
                                 default=becomes_default, run=meta.pipeline_run_id or None,
                                 test_accuracy=meta.test_accuracy)
                if challenger is not None and not becomes_default:
                    new_state.challenger = Rollout(name, challenger.share, challenger.mode)
                    new_state.record("challenger", name, actor, share=challenger.share, mode=challenger.mode)
                try:
                    self._write_state(new_state)
                except BaseException:
                    self.storage.retire(self._version_dir(name), self.model)
                    raise
        finally:
            self.storage.discard(staging)
        log.info("pushed %s/%s%s", self.model, name, " (default)" if new_state.default == name else "")
        return self.get(name)

    def set_default(self, version: str, actor: str | None = None, reason: str = "") -> VersionInfo:
        """Make `version` the default (also the way to roll back to an older version). A challenger
        made the default stops being the challenger."""
        return self._move_default("set-default", version, actor, reason)

    def promote(self, actor: str | None = None, reason: str = "") -> VersionInfo:
        """Make the challenger the default; the old default stays as a version to roll back to."""
        challenger = self.rollout()
        if challenger is None:
            self._require_model()
            raise RegistryConflictError(f"model {self.model!r} has no challenger to promote "
                                        "(`mlpipe models challenger VERSION` sets one)")
        return self._move_default("promote", challenger.version, actor, reason, expect=challenger)

    def rollback(self, to: str | None = None, actor: str | None = None, reason: str = "") -> VersionInfo:
        """Move the default back: to `to`, or to the version that was the default before the last
        change of the default (from the audit log)."""
        if to is None:
            state = self._state()
            to = next((e.get("previous") for e in reversed(state.history)
                       if e.get("previous") and e.get("previous") != state.default), None)
            if to is None:
                self._require_model()
                raise RegistryConflictError(
                    f"model {self.model!r}: the audit log names no earlier default to roll back to; "
                    "name one (`mlpipe models rollback --to VERSION`)")
        return self._move_default("rollback", to, actor, reason)

    def set_challenger(self, version: str, share: float = 0.1, mode: str = "canary",
                       actor: str | None = None, reason: str = "") -> Rollout:
        """Give `version` a share of the default's traffic (canary) or a shadow copy of it."""
        validate_name("version", version)
        rollout = Rollout(version, share, mode)
        with self.storage.lock():
            state = self._state()
            self._require_version(version)
            if version == state.default:
                raise RegistryConflictError(f"{version} is already the default version of model "
                                            f"{self.model!r}; a challenger must be another version")
            state.challenger = rollout
            state.record("challenger", version, actor, reason, share=share, mode=mode)
            self._write_state(state)
        return rollout

    def clear_challenger(self, actor: str | None = None, reason: str = "") -> str:
        """Stop sending traffic to the challenger; returns its version."""
        with self.storage.lock():
            state = self._state()
            if state.challenger is None:
                self._require_model()
                raise NotFoundError(f"model {self.model!r} has no challenger")
            version = state.challenger.version
            state.challenger = None
            state.record("end-challenger", version, actor, reason)
            self._write_state(state)
        return version

    def _move_default(self, action: str, version: str, actor: str | None, reason: str,
                      expect: Rollout | None = None) -> VersionInfo:
        validate_name("version", version)
        with self.storage.lock():
            self.storage.clean_leftovers(self.model)
            state = self._state()
            self._require_version(version)
            if expect is not None and state.challenger != expect:
                raise RegistryConflictError(f"the challenger of model {self.model!r} changed meanwhile; "
                                            "look again (`mlpipe models audit`)")
            previous = state.default
            state.default = version
            metrics = {v: self._metrics(v) for v in {version, previous} if v}
            if state.challenger is not None and state.challenger.version == version:
                state.challenger = None
            state.record(action, version, actor, reason, previous=previous, metrics=metrics or None)
            self._write_state(state)
        log.info("%s: default of %s is now %s (was %s)", action, self.model, version, previous)
        return self.get(version)

    def _metrics(self, version: str) -> dict[str, Any]:
        record = self.storage.read_json(f"{self._version_dir(version)}/version.json") or {}
        meta = record.get("metadata") or {}
        return {k: meta.get(k) for k in ("test_accuracy", "baseline_accuracy", "pipeline_run_id")
                if meta.get(k) is not None}

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

    def delete(self, version: str, actor: str | None = None) -> None:
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
            if state.challenger is not None and state.challenger.version == version:
                raise RegistryConflictError(
                    f"{version} is the challenger of model {self.model!r}; end the rollout first "
                    "(`mlpipe models challenger --clear`)"
                )
            aliased = state.aliases_of(version)
            if aliased:
                raise RegistryConflictError(
                    f"{version} is the target of alias(es) {', '.join(aliased)}; move or remove "
                    "them first (`mlpipe models alias NAME VERSION` / `--remove`)"
                )
            if state.default == version:
                state.default = None
            state.record("delete", version, actor)
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
