"""`mlpipe flywheel`: look at the signals, decide (mlpipe.flywheel.policy), act, record why.

Acting means: retrain (a local pipeline run that learns from the feedback and pushes a blessed model
as the canary challenger), promote the challenger, or end its rollout. Every decision — including
"wait" — is appended to STATE_DIR/flywheel/decisions.jsonl with its signals and reasons; promotions
and ended rollouts are also in the registry's audit log.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from mlpipe.config import Settings
from mlpipe.flywheel.policy import Decision, Policy, Signals, decide
from mlpipe.flywheel.signals import gather
from mlpipe.registry import registry_for
from pipeline.configs import PipelineConfig

log = logging.getLogger(__name__)

ACTOR = "flywheel"


@dataclasses.dataclass(frozen=True)
class Turn:
    signals: Signals
    decision: Decision
    result: str  # what was done


def turn(cfg: PipelineConfig, policy: Policy, dry_run: bool = False,
         drift: Callable[[], tuple[bool | None, str]] | None = None) -> Turn:
    """One look-decide-act step."""
    settings = cfg.settings
    registry = registry_for(settings)
    signals = gather(settings, registry, drift)
    decision = decide(policy, signals)
    result = "dry run: nothing done" if dry_run else _act(cfg, policy, decision, signals)
    record(settings, signals, decision, result)
    return Turn(signals, decision, result)


def _act(cfg: PipelineConfig, policy: Policy, decision: Decision, signals: Signals) -> str:
    registry = registry_for(cfg.settings)
    why = "; ".join(decision.reasons)
    if decision.action == "promote":
        v = registry.promote(actor=ACTOR, reason=why)
        return f"promoted {v.name} to default"
    if decision.action == "end-rollout":
        return f"ended the rollout of {registry.clear_challenger(actor=ACTOR, reason=why)}"
    if decision.action == "retrain":
        from pipeline.local_run import run_local

        share = policy.canary_share if signals.default is not None else None
        record_ = run_local(dataclasses.replace(cfg, challenger_share=share, challenger_mode="canary",
                                                warm_start=cfg.warm_start and signals.default is not None))
        if record_.pushed_version:
            role = f"challenger ({100 * share:g} % canary)" if share else "default"
            return f"retrained: run {record_.run_id} pushed {record_.pushed_version} as {role}"
        return f"retrained: run {record_.run_id} {record_.outcome}"
    return "waited"


def record(settings: Settings, signals: Signals, decision: Decision, result: str) -> None:
    path = settings.flywheel_log
    path.parent.mkdir(parents=True, exist_ok=True)
    entry: dict[str, Any] = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "decision": decision.to_json(),
        "result": result,
        "signals": _signals_json(signals),
    }
    with open(path, "a") as fh:
        fh.write(json.dumps(entry) + "\n")


def _signals_json(s: Signals) -> dict[str, Any]:
    doc = dataclasses.asdict(s)
    doc["online"] = {v: {"labelled": o.labelled, "correct": o.correct} for v, o in s.online.items()}
    return doc


def watch(cfg: PipelineConfig, policy: Policy, interval_s: float, show: Callable[[Turn], None],
          drift: Callable[[], tuple[bool | None, str]] | None = None, turns: int | None = None) -> None:
    """Turn every `interval_s` seconds (forever, or `turns` times)."""
    done = 0
    while turns is None or done < turns:
        show(turn(cfg, policy, drift=drift))
        done += 1
        if turns is None or done < turns:
            time.sleep(interval_s)
