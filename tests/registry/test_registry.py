"""Registry semantics: versions, default, aliases, delete rules, names, metadata, contract checks."""

from __future__ import annotations

import json

import pytest

from mlpipe.errors import (
    InvalidModelError,
    InvalidNameError,
    NotFoundError,
    RegistryConflictError,
    UsageError,
)
from mlpipe.registry import PushMetadata, open_registry
from mlpipe.registry.signature_check import check_contract
from tests.contract_models import wrong_signature_model

META = {
    "pipeline_run_id": "run-2024-01-01T00:00:00",
    "model_artifact_id": 12,
    "blessing_artifact_id": 13,
    "test_accuracy": 0.9923,
    "baseline_accuracy": 0.9901,
    "source_tables": ["local-project.mnist.train", "local-project.mnist.test"],
    "source_queries": {"train": "SELECT * FROM mnist.train"},
    "description": "adanet 2 iterations",
    "extra": {"steps": 3000, "candidates": ["cnn_1", "cnn_2"]},
}


@pytest.fixture
def reg(tmp_path):
    return open_registry(tmp_path / "registry", "mnist")


def test_first_push_is_default_and_later_pushes_promote(reg, fake_models):
    a, b = fake_models
    v1 = reg.push(a, META)
    assert (v1.name, v1.is_default, v1.number) == ("v1", True, 1)
    assert v1.metadata == PushMetadata.from_dict(META)
    assert v1.created_time.endswith("Z")
    assert (v1.saved_model_dir / "saved_model.pb").read_bytes() == (a / "saved_model.pb").read_bytes()
    assert v1.saved_model_dir != a and reg.storage.root in v1.saved_model_dir.parents
    v2 = reg.push(b, PushMetadata(test_accuracy=0.99))
    assert v2.is_default and not reg.get("v1").is_default
    v3 = reg.push(a, promote=False)
    assert v3.name == "v3" and not v3.is_default
    assert reg.default_version() == "v2"
    assert [v.name for v in reg.list_versions()] == ["v1", "v2", "v3"]
    assert reg.list_models() == ["mnist"]


def test_first_push_is_default_even_without_promote(reg, fake_models):
    assert reg.push(fake_models[0], promote=False).is_default


def test_resolve_default_version_alias(reg, fake_models):
    with pytest.raises(NotFoundError, match="not found"):
        reg.resolve()
    reg.push(fake_models[0])
    reg.push(fake_models[1], promote=False)
    assert reg.resolve().name == "v1"
    assert reg.resolve(version="v2").name == "v2"
    reg.set_alias("canary", "v2")
    assert reg.resolve(alias="canary").name == "v2"
    assert reg.get("v2").aliases == ("canary",)
    with pytest.raises(UsageError, match="not both"):
        reg.resolve(version="v1", alias="canary")
    with pytest.raises(NotFoundError, match="no version 'v9'"):
        reg.resolve(version="v9")
    with pytest.raises(NotFoundError, match="no alias 'champion'"):
        reg.resolve(alias="champion")


def test_rollback_and_aliases(reg, fake_models):
    for model in (*fake_models, fake_models[0]):
        reg.push(model)
    assert reg.default_version() == "v3"
    assert reg.set_default("v1").is_default
    assert reg.resolve().name == "v1" and not reg.get("v3").is_default
    reg.set_alias("champion", "v1")
    reg.set_alias("champion", "v2")  # moving an alias
    assert reg.aliases() == {"champion": "v2"}
    with pytest.raises(NotFoundError, match="model 'mnist' has no version 'v7'"):
        reg.set_alias("champion", "v7")
    with pytest.raises(NotFoundError, match="model 'mnist' has no version 'v7'"):
        reg.set_default("v7")
    assert reg.remove_alias("champion") == "v2"
    assert reg.aliases() == {}
    with pytest.raises(NotFoundError, match="model 'mnist' has no alias 'champion'"):
        reg.remove_alias("champion")


def test_delete_rules(reg, fake_models):
    reg.push(fake_models[0])
    reg.push(fake_models[1])
    reg.push(fake_models[0], promote=False)
    with pytest.raises(RegistryConflictError, match="default version"):
        reg.delete("v2")
    reg.set_alias("canary", "v3")
    with pytest.raises(RegistryConflictError, match="alias"):
        reg.delete("v3")
    reg.remove_alias("canary")
    reg.delete("v3")
    reg.delete("v1")
    assert [v.name for v in reg.list_versions()] == ["v2"]
    reg.delete("v2")  # the only version may go, default included
    assert reg.list_versions() == [] and reg.default_version() is None
    with pytest.raises(NotFoundError, match="no versions"):
        reg.resolve()
    # numbers are never reused: a name always means the same model
    assert reg.push(fake_models[1]).name == "v4"
    with pytest.raises(NotFoundError, match="has no version 'v2'"):
        reg.delete("v2")


BAD_NAMES = ["../etc", "..", "%2e%2e", "a/b", "a\\b", "a.b", "", "1abc", "_x", "a-b", "v1 ", "ä",
             "a" * 129, "a%2fb"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_everywhere(tmp_path, fake_models, name):
    root = tmp_path / "registry"
    with pytest.raises(InvalidNameError, match="invalid model name"):
        open_registry(root, name)
    reg = open_registry(root, "mnist")
    reg.push(fake_models[0])
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for call in (lambda: reg.get(name), lambda: reg.resolve(version=name), lambda: reg.set_default(name),
                 lambda: reg.delete(name), lambda: reg.set_alias("ok", name)):
        with pytest.raises(InvalidNameError, match="invalid version name"):
            call()
    for call in (lambda: reg.set_alias(name, "v1"), lambda: reg.resolve(alias=name),
                 lambda: reg.remove_alias(name)):
        with pytest.raises(InvalidNameError, match="invalid alias name"):
            call()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_names_at_the_limit_are_fine(reg, fake_models):
    reg.push(fake_models[0])
    reg.set_alias("A" + "_" * 127, "v1")
    assert reg.resolve(alias="A" + "_" * 127).name == "v1"


def test_metadata_is_validated_before_anything_is_written(reg, fake_models):
    for bad, match in (
        ({"accuracy": 0.9}, "unknown metadata field"),
        ({"test_accuracy": 1.5}, "between 0 and 1"),
        ({"test_accuracy": float("nan")}, "between 0 and 1"),
        ({"model_artifact_id": "12"}, "integer"),
        ({"model_artifact_id": True}, "integer"),
        ({"source_tables": "mnist.train"}, "list"),
        ({"extra": {"x": object()}}, "JSON-serializable"),
        ({"extra": {"x": float("inf")}}, "JSON-serializable"),
    ):
        with pytest.raises(UsageError, match=match):
            reg.push(fake_models[0], bad)
    assert not reg.storage.root.exists() or reg.list_versions() == []


def test_models_without_the_contract_are_refused(reg, fake_models, tmp_path):
    with pytest.raises(NotFoundError, match="SavedModel directory .*missing does not exist"):
        reg.push(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidModelError, match="no saved_model.pb"):
        reg.push(tmp_path / "empty")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "saved_model.pb").write_bytes(b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(InvalidModelError, match="not a valid SavedModel"):
        reg.push(tmp_path / "garbage")
    with pytest.raises(InvalidModelError, match="exactly one input 'image'"):
        reg.push(wrong_signature_model(tmp_path))
    assert reg.list_versions() == []


def test_contract_signature_is_read_without_tensorflow(fake_models):
    sig = check_contract(fake_models[0])["serving_default"]
    assert sig["inputs"]["image"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["outputs"]["class_ids"]["tensor_shape"]["dim"]] == ["-1", "1"]


def test_state_file_is_plain_json(reg, fake_models):
    reg.push(fake_models[0])
    reg.set_alias("champion", "v1")
    state = json.loads((reg.storage.root / "mnist" / "state.json").read_text())
    history = state.pop("history")
    assert state == {"default": "v1", "aliases": {"champion": "v1"}, "next_number": 2, "challenger": None}
    assert [(e["action"], e["version"]) for e in history] == [("push", "v1")]


def test_models_are_separate(tmp_path, fake_models):
    a = open_registry(tmp_path / "r", "mnist")
    b = a.for_model("fashion")
    a.push(fake_models[0])
    b.push(fake_models[1])
    b.push(fake_models[1])
    assert a.list_models() == ["fashion", "mnist"]
    assert [v.name for v in a.list_versions()] == ["v1"]
    assert b.resolve().name == "v2"


def test_cloud_uri_is_refused_clearly(tmp_path):
    with pytest.raises(UsageError, match="only local directories"):
        open_registry("s3://bucket/registry", "mnist")
