"""Gradual rollout in the registry: challenger (canary / shadow), promote, rollback, audit log."""

from __future__ import annotations

import json

import pytest

from mlpipe.errors import NotFoundError, RegistryConflictError, UsageError
from mlpipe.registry import Rollout, open_registry
from mlpipe.registry.rollout import bucket


@pytest.fixture
def reg(tmp_path, fake_models):
    r = open_registry(tmp_path / "registry", "mnist")
    a, b = fake_models
    r.push(a, {"test_accuracy": 0.98, "pipeline_run_id": "run-1"})  # v1, default
    r.push(b, {"test_accuracy": 0.99, "pipeline_run_id": "run-2"}, challenger=Rollout("", 0.25), actor="ci")
    return r


def test_push_as_challenger_keeps_the_default_and_records_why(reg):
    assert reg.default_version() == "v1"
    assert reg.rollout() == Rollout("v2", 0.25, "canary")
    actions = [(e.action, e.version, e.actor) for e in reg.audit()]
    assert actions[-2:] == [("push", "v2", "ci"), ("challenger", "v2", "ci")]
    assert reg.audit()[-1].details == {"share": 0.25, "mode": "canary"}


def test_promote_moves_the_default_ends_the_rollout_and_audits_metrics(reg):
    v = reg.promote(actor="alice@host", reason="canary 2% better online")
    assert v.name == "v2" and v.is_default and reg.rollout() is None
    entry = reg.audit()[-1]
    assert (entry.action, entry.version, entry.previous, entry.actor, entry.reason) == (
        "promote", "v2", "v1", "alice@host", "canary 2% better online")
    assert entry.details["metrics"]["v2"]["test_accuracy"] == 0.99
    assert entry.details["metrics"]["v1"]["test_accuracy"] == 0.98
    with pytest.raises(RegistryConflictError, match="no challenger to promote"):
        reg.promote()


def test_rollback_returns_to_the_previous_default(reg):
    reg.promote()
    v = reg.rollback(reason="complaints")
    assert v.name == "v1" and reg.default_version() == "v1"
    last = reg.audit()[-1]
    assert (last.action, last.version, last.previous, last.reason) == ("rollback", "v1", "v2", "complaints")
    assert reg.rollback(to="v2").name == "v2"


def test_rollback_without_history_names_what_to_do(tmp_path, fake_models):
    r = open_registry(tmp_path / "r", "mnist")
    r.push(fake_models[0])
    with pytest.raises(RegistryConflictError, match="--to VERSION"):
        r.rollback()


def test_challenger_rules(reg):
    with pytest.raises(RegistryConflictError, match="already the default"):
        reg.set_challenger("v1")
    with pytest.raises(NotFoundError, match="no version 'v9'"):
        reg.set_challenger("v9")
    with pytest.raises(UsageError, match="between 0 and 1"):
        reg.set_challenger("v2", share=1.5)
    with pytest.raises(UsageError, match="canary, shadow"):
        reg.set_challenger("v2", mode="blue-green")
    with pytest.raises(RegistryConflictError, match="challenger"):
        reg.delete("v2")  # serving may be sending it traffic
    assert reg.set_challenger("v2", 0.5, "shadow") == Rollout("v2", 0.5, "shadow")
    assert reg.clear_challenger(reason="done") == "v2" and reg.rollout() is None
    with pytest.raises(NotFoundError, match="no challenger"):
        reg.clear_challenger()
    reg.delete("v2")
    assert reg.audit()[-1].action == "delete"


def test_set_default_to_the_challenger_ends_the_rollout(reg):
    reg.set_default("v2", actor="bob", reason="manual")
    assert reg.rollout() is None
    assert (reg.audit()[-1].action, reg.audit()[-1].previous) == ("set-default", "v1")


def test_the_state_file_holds_default_rollout_and_audit_together(reg):
    """One file, one atomic write: a change and its audit entry cannot be separated by a crash."""
    state = json.loads((reg.storage.root / "mnist" / "state.json").read_text())
    assert state["challenger"] == {"version": "v2", "share": 0.25, "mode": "canary"}
    assert [e["action"] for e in state["history"]] == ["push", "push", "challenger"]


def test_canary_bucket_is_deterministic_and_uniform():
    ids = [f"req-{i}" for i in range(20_000)]
    shares = [sum(Rollout("v2", s).routes_to_challenger(i) for i in ids) / len(ids) for s in (0.1, 0.5)]
    assert abs(shares[0] - 0.1) < 0.01 and abs(shares[1] - 0.5) < 0.01
    assert [bucket(i) for i in ids[:50]] == [bucket(i) for i in ids[:50]]
    assert Rollout("v2", 0.0).routes_to_challenger("x") is False
    assert Rollout("v2", 1.0).routes_to_challenger("x") is True


def test_cli_rollout_commands(tmp_path, fake_models, capsys):
    from mlpipe.cli import main

    root = tmp_path / "registry"
    r = open_registry(root, "mnist")
    r.push(fake_models[0])
    r.push(fake_models[1], promote=False)
    flags = ["--registry-root", str(root)]
    assert main(["models", "challenger", "v2", "--share", "0.2", "--reason", "try it", *flags]) == 0
    assert "answers 20% of the default's requests" in capsys.readouterr().out
    assert main(["models", "list", *flags]) == 0
    assert "canary 20%" in capsys.readouterr().out
    assert main(["models", "promote", "--reason", "looks good", *flags]) == 0
    assert "promoted v2 to default (was v1" in capsys.readouterr().out
    assert main(["models", "rollback", *flags]) == 0
    assert "from v2 to v1" in capsys.readouterr().out
    assert main(["models", "audit", "--json", *flags]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["action"] for e in entries][-3:] == ["challenger", "promote", "rollback"]
    assert entries[-2]["reason"] == "looks good"
    assert main(["models", "promote", *flags]) == 1
    assert "no challenger" in capsys.readouterr().err
