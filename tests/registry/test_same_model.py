"""The Pusher's question before pushing: does the registry already hold this model? (no phantom versions)"""

from __future__ import annotations

from mlpipe.registry import open_registry
from mlpipe.registry.same_model import DIGEST_KEY, find_same_model, model_digest


def test_same_content_is_found_and_the_default_preferred(tmp_path, fake_models):
    a, b = fake_models
    reg = open_registry(tmp_path / "registry", "mnist")
    da, db = model_digest(a), model_digest(b)
    assert da != db and da == model_digest(a)
    assert find_same_model(reg, da, 7) is None  # empty registry
    reg.push(a, {"model_artifact_id": 7, "extra": {DIGEST_KEY: da}})
    assert find_same_model(reg, da, 99).name == "v1"  # same files, whatever the artifact id
    assert find_same_model(reg, db, 8) is None  # another model
    reg.push(b, {"model_artifact_id": 8, "extra": {DIGEST_KEY: db}})
    reg.push(a, {"model_artifact_id": 7, "extra": {DIGEST_KEY: da}})  # a phantom from before the fix
    found = find_same_model(reg, da, 7)
    assert found.name == "v3" and found.is_default
    reg.set_default("v2")
    assert find_same_model(reg, da, 7).name == "v1"  # not the default: the first holder


def test_versions_without_a_digest_match_by_artifact_id(tmp_path, fake_models):
    a, b = fake_models
    reg = open_registry(tmp_path / "registry", "mnist")
    reg.push(a, {"model_artifact_id": 13})
    assert find_same_model(reg, model_digest(b), 13).name == "v1"
    assert find_same_model(reg, model_digest(b), 14) is None
