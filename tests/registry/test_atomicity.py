"""Crashes and concurrent writers never leave a half-visible version or an inconsistent state."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from mlpipe.config import REPO_ROOT
from mlpipe.errors import NotFoundError
from mlpipe.registry import Registry, open_registry
from mlpipe.registry.storage import LocalStorage


def _worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.registry.worker", *args], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _assert_consistent(reg: Registry) -> list[str]:
    names = [v.name for v in reg.list_versions()]
    state = json.loads((reg.storage.root / reg.model / "state.json").read_text())
    assert state["default"] in names
    assert set(state["aliases"].values()) <= set(names)
    for name in names:
        d = reg.storage.root / reg.model / "versions" / name
        assert (d / "version.json").is_file() and (d / "saved_model" / "saved_model.pb").is_file()
    assert state["next_number"] > max(int(n[1:]) for n in names)
    leftovers = list((reg.storage.root / reg.model).glob(".staging/*"))
    leftovers += list((reg.storage.root / reg.model).glob(".trash/*"))
    assert leftovers == []
    return names


def test_failed_copy_leaves_no_version(tmp_path, fake_models, monkeypatch):
    reg = open_registry(tmp_path / "r", "mnist")
    reg.push(fake_models[0])
    copied = []
    real_copyfile = shutil.copyfile

    def copy_then_fail(src, dst, **kw):  # copying fails midway, after some files
        if len(copied) == 2:
            raise OSError(5, "Input/output error")
        copied.append(src)
        return real_copyfile(src, dst, **kw)

    monkeypatch.setattr(shutil, "copyfile", copy_then_fail)
    with pytest.raises(OSError, match="Input/output"):
        reg.push(fake_models[1])
    monkeypatch.undo()
    assert len(copied) == 2 and _assert_consistent(reg) == ["v1"]
    assert reg.push(fake_models[1]).name == "v2"


def test_failed_state_write_rolls_the_version_back(tmp_path, fake_models, monkeypatch):
    reg = open_registry(tmp_path / "r", "mnist")
    reg.push(fake_models[0])
    original = LocalStorage.write_json

    def failing(self, rel, data):
        if str(rel).endswith("state.json"):
            raise OSError(28, "No space left on device")
        return original(self, rel, data)

    monkeypatch.setattr(LocalStorage, "write_json", failing)
    with pytest.raises(OSError, match="No space"):
        reg.push(fake_models[1])
    monkeypatch.undo()
    assert _assert_consistent(reg) == ["v1"] and reg.default_version() == "v1"


def test_writer_killed_midway_leaves_nothing_visible(tmp_path, fake_models):
    """A pusher SIGKILLed after copying, while waiting for the lock: its staging copy stays
    invisible and the next writer removes it."""
    reg = open_registry(tmp_path / "r", "mnist")
    reg.push(fake_models[0])
    staging = reg.storage.root / "mnist" / ".staging"
    with reg.storage.lock():
        proc = _worker("push", str(reg.storage.root), str(fake_models[1]))
        deadline = time.monotonic() + 30
        while not list(staging.glob("*/saved_model/saved_model.pb")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(staging.glob("*")), "the pusher never staged its copy"
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert [v.name for v in reg.list_versions()] == ["v1"]
    assert reg.push(fake_models[1]).name == "v2"
    _assert_consistent(reg)


@pytest.mark.parametrize("point", ["locked", "published"])
def test_push_killed_inside_the_lock_leaves_the_registry_as_it_was(tmp_path, fake_models, point):
    """A pusher SIGKILLed while it holds the writer lock (`locked`), or after its version directory
    was renamed into place but before state.json recorded it (`published`): readers see the registry
    as it was before the push, and the next writer gets the lock, cleans up and pushes."""
    reg = open_registry(tmp_path / "r", "mnist")
    reg.push(fake_models[0])
    proc = _worker("crash", str(reg.storage.root), str(fake_models[1]), point)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    model_dir = reg.storage.root / "mnist"
    if point == "published":
        assert (model_dir / "versions" / "v2").is_dir()  # the kill landed after the rename
    else:
        assert list(model_dir.glob(".staging/*/saved_model/saved_model.pb"))  # ... and before it
    # Readers: only v1, still the default; v2 is not served, listed or resolvable.
    assert [v.name for v in reg.list_versions()] == ["v1"]
    assert reg.resolve().name == "v1" and reg.default_version() == "v1"
    with pytest.raises(NotFoundError, match="has no version 'v2'"):
        reg.get("v2")
    # The next writer, in another process, is not blocked by the dead one's lock and cleans up after it.
    nxt = _worker("push", str(reg.storage.root), str(fake_models[1]))
    out, err = nxt.communicate(timeout=120)
    assert nxt.returncode == 0, err
    assert out.strip() == "v2"
    assert _assert_consistent(reg) == ["v1", "v2"] and reg.default_version() == "v2"
    assert reg.get("v2").saved_model_dir.joinpath("saved_model.pb").read_bytes() == (
        fake_models[1] / "saved_model.pb").read_bytes()


def test_four_processes_pushing_and_switching_at_once(tmp_path, fake_models):
    reg = open_registry(tmp_path / "r", "mnist")
    rounds = 5
    procs = [_worker("churn", str(reg.storage.root), str(fake_models[i % 2]), str(rounds), str(i))
             for i in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    pushed = [n for r in results for n in r["pushed"]]
    deleted = {n for r in results for n in r["deleted"]}
    assert sorted(pushed, key=lambda n: int(n[1:])) == [f"v{i}" for i in range(1, 4 * rounds + 1)]
    remaining = _assert_consistent(reg)
    assert set(remaining) == set(pushed) - deleted
