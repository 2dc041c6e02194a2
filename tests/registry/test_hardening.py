"""Registry and CLI edges that used to end in tracebacks or trust too much (issue 16 rows 10-13)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from mlpipe.config import REPO_ROOT
from mlpipe.errors import DataIntegrityError, InvalidModelError
from mlpipe.registry import open_registry


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPE_")}
    return subprocess.run([sys.executable, "-m", "mlpipe.cli", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr


def _copy_model(fake_models, tmp_path, name="model"):
    dst = tmp_path / name
    shutil.copytree(fake_models[0], dst)
    return dst


def test_a_symlink_in_a_pushed_saved_model_is_refused(tmp_path, fake_models):
    src = _copy_model(fake_models, tmp_path)
    (src / "assets").mkdir(exist_ok=True)
    os.symlink("/etc/hostname", src / "assets" / "leak.txt")
    reg = open_registry(tmp_path / "registry", "mnist")
    with pytest.raises(InvalidModelError, match="leak.txt .* is a symlink"):
        reg.push(src)
    assert reg.list_versions() == [] and not (tmp_path / "registry" / "mnist" / ".staging").exists()


def test_a_fifo_in_a_pushed_saved_model_is_a_one_line_error(tmp_path, fake_models):
    src = _copy_model(fake_models, tmp_path)
    os.mkfifo(src / "variables" / "pipe")
    proc = _cli("models", "push", str(src), "--state-dir", str(tmp_path / "state"), timeout=120)
    _one_line_error(proc, "not a regular file")


def test_registry_cli_os_errors_are_one_line(tmp_path, fake_models):
    as_file = tmp_path / "not-a-dir"
    as_file.write_text("x")
    _one_line_error(_cli("models", "list", "--registry-root", str(as_file / "sub")), "Not a directory")
    _one_line_error(_cli("models", "push", str(fake_models[0]), "--registry-root", str(as_file)),
                    "Not a directory")  # the root is a file
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 5000 + "]" * 5000)
    _one_line_error(_cli("models", "push", str(fake_models[0]), "--registry-root", str(tmp_path / "r"),
                         "--metadata", str(deep)), "nested too deeply")


def test_a_corrupt_state_file_is_a_one_line_error(tmp_path, fake_models):
    root = tmp_path / "registry"
    open_registry(root, "mnist").push(fake_models[0])
    (root / "mnist" / "state.json").write_text('{"default": "v1", ')
    with pytest.raises(DataIntegrityError, match="state.json is corrupt"):
        open_registry(root, "mnist").list_versions()
    _one_line_error(_cli("models", "list", "--registry-root", str(root)), "is corrupt")


def test_any_registry_write_cleans_leftovers_of_dead_writers(tmp_path, fake_models):
    root = tmp_path / "registry"
    reg = open_registry(root, "mnist")
    reg.push(fake_models[0])
    reg.push(fake_models[1], promote=False)
    dead = subprocess.Popen(["true"])
    dead.wait()
    model_dir = root / "mnist"
    leftovers = [model_dir / f".state.json.{dead.pid}-0123abcd.tmp", model_dir / ".staging" / f"{dead.pid}-x",
                 model_dir / ".trash" / "v9-dead"]
    live = model_dir / f".state.json.{os.getpid()}-live.tmp"  # a writer still running: kept
    leftovers[0].write_text("{}")
    leftovers[1].mkdir(parents=True)
    leftovers[2].mkdir(parents=True)
    live.write_text("{}")
    for write in (lambda: reg.set_default("v2"), lambda: reg.set_alias("champion", "v1"),
                  lambda: reg.remove_alias("champion"), lambda: reg.set_default("v1")):
        write()
        assert not any(p.exists() for p in leftovers)
        leftovers[0].write_text("{}")
        leftovers[1].mkdir(parents=True)
        leftovers[2].mkdir(parents=True)
    assert live.exists()
    assert json.loads((model_dir / "state.json").read_text())["default"] == "v1"


@pytest.mark.parametrize("flags, fragment", [
    (["--dataset", "a-b"], "invalid dataset 'a-b'"),
    (["--project", "a b"], "invalid project 'a b'"),
    (["--project", "Evil/../x"], "invalid project"),
])
def test_bad_project_and_dataset_names_are_refused_at_the_edge(tmp_path, flags, fragment):
    proc = _cli("load-data", "--limit", "10", "--state-dir", str(tmp_path), *flags)
    assert proc.returncode == 2
    _one_line_error(proc, fragment)
