"""An edit to the code a component runs changes that component's execution properties (its cache key),
locally and in the Vertex pipeline; TFX alone sees no change for code named by import path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline import code_fingerprint as cf
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def src(tmp_path, monkeypatch) -> Path:
    """A copy of the project packages the fingerprint reads, to edit freely; fingerprints read it."""
    root = tmp_path / "src"
    for pkg in ("models", "pipeline", "mlpipe"):
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cf, "REPO_ROOT", root)
    return root


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_closure_follows_project_imports_only():
    files = {str(p.relative_to(REPO)) for p in cf.module_closure(["models.model"])}
    assert {"models/model.py", "models/generators.py", "models/search_report.py", "models/hparams.py",
            "mlpipe/contract.py", "models/__init__.py"} <= files
    assert not any(f.startswith("pipeline/") for f in files)  # models never import pipeline


def test_each_component_sees_only_its_own_code(src):
    transform, trainer = cf.code_fingerprint("models.preprocessing"), cf.code_fingerprint("models.model")
    pusher = cf.code_fingerprint("pipeline.components.registry_pusher")
    _edit(src / "models" / "preprocessing.py", "255.0", "127.5")
    assert cf.code_fingerprint("models.preprocessing") != transform
    assert cf.code_fingerprint("models.model") == trainer
    _edit(src / "models" / "generators.py", "def ", "def  _unused(): pass\n\n\ndef ")
    assert cf.code_fingerprint("models.model") != trainer
    assert cf.code_fingerprint("pipeline.components.registry_pusher") == pusher
    _edit(src / "mlpipe" / "registry" / "file_registry.py", "\n", "\n# edited\n")  # imported by the Pusher
    assert cf.code_fingerprint("pipeline.components.registry_pusher") != pusher


def _properties(cfg) -> dict[str, dict]:
    from pipeline.pipeline import create_pipeline

    return {c.id: dict(c.exec_properties) for c in create_pipeline(cfg).components}


def _code(props: dict, node: str) -> str | None:
    p = props[node]
    if "custom_config" in p and p["custom_config"]:
        return json.loads(p["custom_config"]).get("code")
    return p.get("code_fingerprint")


@pytest.mark.parametrize("orchestration", ["local", "vertex"])
def test_preprocessing_edit_changes_the_transform_cache_key(src, tmp_path, orchestration):
    from pipeline.configs import PipelineConfig

    settings = make_settings(tmp_path / "state", project="p-123", gcs_root="gs://bucket/x", image="img:1")
    cfg = PipelineConfig.for_profile(settings, "quick")
    cfg = cfg.on_vertex() if orchestration == "vertex" else cfg
    nodes = ["Transform", "Trainer", "ExampleValidator"] + (
        ["LocalBigQueryExampleGen", "Pusher"] if orchestration == "local" else [])
    before = _properties(cfg)
    assert all(_code(before, n) for n in nodes), {n: _code(before, n) for n in nodes}
    _edit(src / "models" / "preprocessing.py", "255.0", "127.5")
    after = _properties(cfg)
    assert _code(after, "Transform") != _code(before, "Transform")
    assert {n: _code(after, n) for n in nodes if n != "Transform"} == \
        {n: _code(before, n) for n in nodes if n != "Transform"}
