"""The flywheel's decisions as a pure function: signals in, decisions with their reasons out.

Kept free of I/O so that every rule is a unit test away; `mlpipe.flywheel.signals` gathers the
signals (BigQuery, the registry, ML Metadata, the drift monitor) and `pipeline.flywheel` acts.

Two questions, in this order:
1. Is a challenger rolling out? Once it has enough labelled traffic, promote it if its online
   accuracy is at least the default's (plus a margin), else end its rollout. Until then, wait.
   While a challenger rolls out nothing is retrained: one experiment at a time.
2. Otherwise, retrain when any trigger fires: drift detected, enough new labels since the last run,
   or the schedule's interval has passed. The new model goes out as a challenger (canary share).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlpipe.errors import UsageError


@dataclass(frozen=True)
class Policy:
    min_new_labels: int = 200  # retrain once this many labels arrived since the last run (0: off)
    retrain_on_drift: bool = True
    schedule_hours: float | None = None  # retrain at least this often (None: no schedule)
    canary_share: float = 0.2  # the share of default traffic a retrained model answers
    min_labelled: int = 50  # labelled predictions of the challenger (and of the default) to judge on
    promote_margin: float = 0.0  # challenger online accuracy must be ≥ default's + margin

    def __post_init__(self) -> None:
        if self.min_new_labels < 0 or self.min_labelled < 1:
            raise UsageError("min-new-labels must be ≥ 0 and min-labelled ≥ 1")
        if not 0.0 < self.canary_share <= 1.0:
            raise UsageError(f"canary share must be in (0, 1], not {self.canary_share}")
        if self.schedule_hours is not None and self.schedule_hours <= 0:
            raise UsageError("schedule hours must be positive")


@dataclass(frozen=True)
class Online:
    """A version's served predictions that later got a label: how many, and how many were right."""

    labelled: int = 0
    correct: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


@dataclass(frozen=True)
class Signals:
    default: str | None
    challenger: str | None = None
    new_labels: int = 0  # labels stored since the last pipeline run started
    drift: bool | None = None  # None: not measured (no traffic, no monitor)
    drift_detail: str = ""
    hours_since_last_run: float | None = None  # None: never ran
    online: dict[str, Online] = field(default_factory=dict)  # version → online accuracy in the window


@dataclass(frozen=True)
class Decision:
    action: str  # retrain, promote, end-rollout or wait
    reasons: tuple[str, ...]
    version: str | None = None  # the version promoted or whose rollout ends

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": list(self.reasons)}

    def describe(self) -> str:
        target = f" {self.version}" if self.version else ""
        return f"{self.action}{target}: " + "; ".join(self.reasons)


def decide(policy: Policy, s: Signals) -> Decision:
    if s.challenger is not None:
        return _judge_challenger(policy, s)
    reasons = []
    if policy.retrain_on_drift and s.drift:
        reasons.append(f"drift detected ({s.drift_detail})" if s.drift_detail else "drift detected")
    if policy.min_new_labels and s.new_labels >= policy.min_new_labels:
        reasons.append(f"{s.new_labels} new labels (≥ {policy.min_new_labels})")
    if policy.schedule_hours is not None and (
            s.hours_since_last_run is None or s.hours_since_last_run >= policy.schedule_hours):
        last = "never ran" if s.hours_since_last_run is None else f"last run {s.hours_since_last_run:.1f} h ago"
        reasons.append(f"schedule: every {policy.schedule_hours:g} h, {last}")
    if s.default is None:
        reasons.append("no model is served yet")
    if reasons:
        return Decision("retrain", tuple(reasons))
    quiet = [f"{s.new_labels} new labels (< {policy.min_new_labels})" if policy.min_new_labels else "",
             "no drift" if s.drift is False else ("drift not measured" if s.drift is None else ""),
             f"last run {s.hours_since_last_run:.1f} h ago" if s.hours_since_last_run is not None else ""]
    return Decision("wait", tuple(r for r in quiet if r) or ("no trigger fired",))


def _judge_challenger(policy: Policy, s: Signals) -> Decision:
    c, d = s.online.get(s.challenger, Online()), s.online.get(s.default or "", Online())
    if c.labelled < policy.min_labelled or d.labelled < policy.min_labelled:
        return Decision("wait", (f"challenger {s.challenger} rolling out: {c.labelled} labelled predictions, "
                                 f"default {s.default}: {d.labelled} (need {policy.min_labelled} each)",),
                        s.challenger)
    judged = (f"online accuracy {s.challenger} {100 * c.accuracy:.1f} % on {c.labelled} labels vs "
              f"{s.default} {100 * d.accuracy:.1f} % on {d.labelled}")
    if c.accuracy >= d.accuracy + policy.promote_margin:
        return Decision("promote", (judged,), s.challenger)
    return Decision("end-rollout", (judged + f" (needs ≥ +{100 * policy.promote_margin:g} pt)",), s.challenger)
