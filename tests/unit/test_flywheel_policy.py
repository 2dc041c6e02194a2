"""The flywheel's decision rules, one trigger at a time."""

from __future__ import annotations

import pytest

from mlpipe.errors import UsageError
from mlpipe.flywheel.policy import Online, Policy, Signals, decide

POLICY = Policy(min_new_labels=100, schedule_hours=24, min_labelled=50, promote_margin=0.0)


def test_nothing_fired_waits_and_says_why():
    d = decide(POLICY, Signals("v1", new_labels=10, drift=False, hours_since_last_run=2))
    assert d.action == "wait"
    assert d.reasons == ("10 new labels (< 100)", "no drift", "last run 2.0 h ago")


@pytest.mark.parametrize(("signals", "reason"), [
    (Signals("v1", drift=True, drift_detail="ink mass +40 %", hours_since_last_run=1),
     "drift detected (ink mass +40 %)"),
    (Signals("v1", new_labels=100, drift=False, hours_since_last_run=1), "100 new labels (≥ 100)"),
    (Signals("v1", drift=False, hours_since_last_run=30), "schedule: every 24 h, last run 30.0 h ago"),
    (Signals("v1", drift=False, hours_since_last_run=None), "schedule: every 24 h, never ran"),
    (Signals(None, drift=None, hours_since_last_run=1), "no model is served yet"),
])
def test_each_trigger_retrains_with_its_reason(signals, reason):
    d = decide(POLICY, signals)
    assert d.action == "retrain" and reason in d.reasons


def test_every_fired_trigger_is_a_reason():
    d = decide(POLICY, Signals("v1", new_labels=500, drift=True, hours_since_last_run=48))
    assert len(d.reasons) == 3


def test_drift_is_ignored_when_the_policy_says_so():
    d = decide(Policy(retrain_on_drift=False, min_new_labels=0), Signals("v1", drift=True, hours_since_last_run=1))
    assert d.action == "wait"


def test_a_challenger_waits_for_enough_labelled_traffic():
    s = Signals("v1", challenger="v2", new_labels=10_000, drift=True,
                online={"v2": Online(49, 49), "v1": Online(500, 400)})
    d = decide(POLICY, s)
    assert (d.action, d.version) == ("wait", "v2")  # no retrain while a rollout runs
    assert "49 labelled predictions" in d.reasons[0]


def test_a_better_challenger_is_promoted_a_worse_one_ends():
    better = Signals("v1", challenger="v2", online={"v2": Online(60, 57), "v1": Online(300, 240)})
    assert (decide(POLICY, better).action, decide(POLICY, better).version) == ("promote", "v2")
    assert "95.0 % on 60 labels vs v1 80.0 % on 300" in decide(POLICY, better).reasons[0]
    worse = Signals("v1", challenger="v2", online={"v2": Online(60, 30), "v1": Online(300, 240)})
    assert decide(POLICY, worse).action == "end-rollout"
    margin = Policy(promote_margin=0.2, min_labelled=50)
    assert decide(margin, better).action == "end-rollout"  # +15 pt is not +20 pt


def test_bad_policy_values_are_usage_errors():
    with pytest.raises(UsageError, match="canary share"):
        Policy(canary_share=0)
    with pytest.raises(UsageError, match="schedule hours"):
        Policy(schedule_hours=-1)
