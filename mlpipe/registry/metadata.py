"""What the pipeline records about each pushed version (lineage and quality), validated on push."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlpipe.errors import UsageError


@dataclass(frozen=True)
class PushMetadata:
    """Lineage and quality of a pushed model; every field is optional.

    `model_artifact_id` / `blessing_artifact_id` are the ML Metadata ids of the Trainer's Model and
    the Evaluator's ModelBlessing artifacts; accuracies are fractions in [0, 1]; `source_queries`
    maps a split name to the query that produced it; `extra` is any JSON-serializable dict.
    """

    pipeline_run_id: str = ""
    model_artifact_id: int | None = None
    blessing_artifact_id: int | None = None
    test_accuracy: float | None = None
    baseline_accuracy: float | None = None
    source_tables: tuple[str, ...] = ()
    source_queries: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(isinstance(self.pipeline_run_id, str), "pipeline_run_id must be a string")
        _check(isinstance(self.description, str), "description must be a string")
        for name in ("model_artifact_id", "blessing_artifact_id"):
            value = getattr(self, name)
            _check(value is None or (isinstance(value, int) and not isinstance(value, bool)),
                   f"{name} must be an integer ML Metadata id")
        for name in ("test_accuracy", "baseline_accuracy"):
            value = getattr(self, name)
            ok = value is None or (
                isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and 0.0 <= value <= 1.0
            )
            _check(ok, f"{name} must be a fraction between 0 and 1")
        tables = self.source_tables
        _check(isinstance(tables, (list, tuple)) and all(isinstance(t, str) for t in tables),
               "source_tables must be a list of table names")
        object.__setattr__(self, "source_tables", tuple(tables))
        queries = self.source_queries
        _check(isinstance(queries, Mapping)
               and all(isinstance(k, str) and isinstance(v, str) for k, v in queries.items()),
               "source_queries must map names to query strings")
        _check(isinstance(self.extra, Mapping), "extra must be a dict")
        try:
            json.dumps(dict(self.extra), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise UsageError(f"metadata extra must be JSON-serializable: {e}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PushMetadata:
        if not isinstance(data, Mapping):
            raise UsageError("metadata must be a JSON object / dict")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown metadata field(s) {unknown}; known: {sorted(known)} "
                             "(put anything else under 'extra')")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline_run_id": self.pipeline_run_id,
            "model_artifact_id": self.model_artifact_id,
            "blessing_artifact_id": self.blessing_artifact_id,
            "test_accuracy": self.test_accuracy,
            "baseline_accuracy": self.baseline_accuracy,
            "source_tables": list(self.source_tables),
            "source_queries": dict(self.source_queries),
            "description": self.description,
            "extra": dict(self.extra),
        }


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(f"metadata: {message}")
