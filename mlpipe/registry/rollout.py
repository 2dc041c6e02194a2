"""Gradual rollout state of one model: a challenger beside the default, and the audit log of changes.

A challenger is a version that receives a share of the default's traffic (`canary`: its answer is
returned to that share of requests) or sees it without answering (`shadow`: the default answers,
the challenger's prediction is only logged). Which requests go to the challenger is decided by a hash
of the request id, so the split is deterministic (a client that resends its `X-Request-Id` lands on
the same version) and needs no shared counter between server instances.

Every change to the default or the challenger is appended to the model's audit log (who, when,
why, and the versions' recorded metrics), kept in the same state file as the default, so the change
and its record are written in one atomic step.
"""

from __future__ import annotations

import getpass
import hashlib
import math
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

from mlpipe.errors import UsageError

MODES = ("canary", "shadow")
# The audit log keeps the newest entries; older ones are dropped (the state file is read on every
# request, so it must stay small).
MAX_AUDIT_ENTRIES = 500


@dataclass(frozen=True)
class Rollout:
    version: str
    share: float = 0.1
    mode: str = "canary"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"rollout mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        share = self.share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share) \
                or not 0.0 <= share <= 1.0:
            raise UsageError(f"challenger share must be a fraction between 0 and 1, not {share!r}")

    @classmethod
    def from_json(cls, data: Any) -> Rollout | None:
        if not isinstance(data, dict) or not isinstance(data.get("version"), str):
            return None
        try:
            return cls(data["version"], float(data.get("share", 0.1)), str(data.get("mode", "canary")))
        except (UsageError, TypeError, ValueError):
            return None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def routes_to_challenger(self, request_id: str) -> bool:
        """Whether this request's answer (canary) or shadow copy (shadow) involves the challenger.
        For shadow the share is the fraction of requests mirrored to the challenger."""
        return bucket(request_id) < self.share


def bucket(request_id: str) -> float:
    """A uniform number in [0, 1) fixed by the request id."""
    digest = hashlib.sha256(request_id.encode("utf-8", "replace")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class AuditEntry:
    time: str
    action: str  # push, set-default, promote, rollback, challenger, end-challenger, delete
    version: str | None
    previous: str | None = None  # the default before the change (for default-moving actions)
    actor: str = ""
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> AuditEntry | None:
        if not isinstance(data, dict) or not isinstance(data.get("action"), str):
            return None
        return cls(
            time=str(data.get("time", "")), action=data["action"], version=data.get("version"),
            previous=data.get("previous"), actor=str(data.get("actor", "")),
            reason=str(data.get("reason", "")), details=dict(data.get("details") or {}),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def default_actor() -> str:
    """Who is changing the registry from this process: user@host."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
