"""The cloud pipeline's registry steps, run through their executors on a URL registry (file:// and
ram:// stand in for gs://): the Pusher writes the blessed model with its lineage ids into the bucket
registry, the baseline step hands the Evaluator the model behind that registry's default — only if
this pipeline pushed it — and the Evaluator ignores an empty baseline."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
import tensorflow as tf
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from mlpipe.registry import open_registry
from pipeline.components import registry_baseline, registry_pusher

PIPELINE = "mnist-automl"


@pytest.fixture(params=["file", "ram"])
def registry_root(request, tmp_path) -> str:
    if request.param == "file":
        return (tmp_path / "bucket" / "registry").as_uri()
    return f"ram://bucket-{uuid.uuid4().hex}/registry"


def _artifact(kind, uri: str, artifact_id: int):
    artifact = kind()
    artifact.uri = uri
    artifact.id = artifact_id
    return artifact


def _push(registry_root: str, saved_model: Path, tmp_path: Path, model_id: int, pipeline: str = PIPELINE):
    """The Pusher's executor as the cloud pipeline configures it (pipeline._pushers)."""
    model = _artifact(standard_artifacts.Model, str(tmp_path / f"model-{model_id}"), model_id)
    shutil.copytree(saved_model, path_utils.serving_model_dir(model.uri))
    blessing = _artifact(standard_artifacts.ModelBlessing, str(tmp_path / f"blessing-{model_id}"), model_id + 1)
    blessing.set_int_custom_property("blessed", 1)
    Path(blessing.uri).mkdir()
    (Path(blessing.uri) / "BLESSED").touch()
    pushed = _artifact(standard_artifacts.PushedModel, str(tmp_path / f"pushed-{model_id}"), model_id + 2)
    config = {"registry_root": registry_root, "model": "mnist", "promote": True,
              "source_tables": ["p.mnist.train"], "source_queries": {"train": "SELECT 1"},
              "extra": {"pipeline_name": pipeline, "orchestration": "vertex"}}
    registry_pusher.Executor().Do(
        {"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
        {"custom_config": json.dumps(config)})
    return model, pushed


def _baseline(registry_root: str, out_uri: str):
    out = _artifact(standard_artifacts.Model, out_uri, 99)
    registry_baseline.RegistryBaselineExecutor().Do(
        {}, {"model": [out]},
        {"registry_root": registry_root, "model_name": "mnist", "pipeline_name": PIPELINE})
    return out


def test_pusher_writes_the_blessed_model_with_lineage_into_the_url_registry(registry_root, fake_models, tmp_path):
    model, pushed = _push(registry_root, fake_models[0], tmp_path, model_id=11)
    info = open_registry(registry_root, "mnist").resolve()
    assert info.name == "v1" and pushed.get_string_custom_property("pushed_version") == "v1"
    assert pushed.get_string_custom_property("pushed_destination") == f"{registry_root}/mnist/versions/v1/saved_model"
    assert (info.metadata.model_artifact_id, info.metadata.blessing_artifact_id) == (11, 12)
    assert info.metadata.extra["pipeline_name"] == PIPELINE
    assert info.metadata.extra["model_uri"] == model.uri
    with tf.io.gfile.GFile(f"{info.saved_model_uri}/saved_model.pb", "rb") as f:
        assert f.read() == (fake_models[0] / "saved_model.pb").read_bytes()


def test_baseline_is_empty_without_a_default(registry_root, tmp_path):
    out = _baseline(registry_root, str(tmp_path / "baseline"))
    assert out.get_string_custom_property("registry_version") == ""
    assert not tf.io.gfile.exists(path_utils.serving_model_dir(out.uri))


def test_baseline_is_the_default_version_of_this_pipeline(registry_root, fake_models, tmp_path):
    _push(registry_root, fake_models[0], tmp_path, model_id=11)
    _push(registry_root, fake_models[1], tmp_path, model_id=21)
    open_registry(registry_root, "mnist").set_default("v1")  # a rollback: users get v1
    out = _baseline(registry_root, str(tmp_path / "baseline"))
    assert out.get_string_custom_property("registry_version") == "v1"
    copied = Path(path_utils.serving_model_dir(out.uri)) / "saved_model.pb"
    assert copied.read_bytes() == (fake_models[0] / "saved_model.pb").read_bytes()


def test_a_default_pushed_by_another_pipeline_is_no_baseline(registry_root, fake_models, tmp_path):
    _push(registry_root, fake_models[0], tmp_path, model_id=11, pipeline="other-pipeline")
    out = _baseline(registry_root, str(tmp_path / "baseline"))
    assert out.get_string_custom_property("registry_version") == ""


def test_evaluator_drops_an_empty_baseline(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(registry_baseline.evaluator_executor.Executor, "Do",
                        lambda self, i, o, e: seen.update(i))
    empty = _artifact(standard_artifacts.Model, str(tmp_path / "empty"), 1)
    full = _artifact(standard_artifacts.Model, str(tmp_path / "full"), 2)
    Path(path_utils.serving_model_dir(full.uri)).mkdir(parents=True)
    executor = registry_baseline.BaselineAwareEvaluatorExecutor()
    executor.Do({"baseline_model": [empty], "model": []}, {}, {})
    assert seen["baseline_model"] == []
    executor.Do({"baseline_model": [full], "model": []}, {}, {})
    assert seen["baseline_model"] == [full]


def test_models_on_a_url_filesystem_are_told_apart(registry_root, fake_models, tmp_path):
    """In the cloud the Trainer's model is on gs://: two different models must become two versions
    (the digest that detects an already-registered model must read the model, wherever it is)."""
    for i, saved_model in enumerate(fake_models[:2]):
        uri = f"ram://trainer-{uuid.uuid4().hex}/model"
        for path in saved_model.rglob("*"):
            if path.is_file():
                target = f"{path_utils.serving_model_dir(uri)}/{path.relative_to(saved_model).as_posix()}"
                tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
                tf.io.gfile.copy(str(path), target, overwrite=True)
        model = _artifact(standard_artifacts.Model, uri, 100 + i)
        blessing = _artifact(standard_artifacts.ModelBlessing, str(tmp_path / f"b{i}"), 200 + i)
        blessing.set_int_custom_property("blessed", 1)
        pushed = _artifact(standard_artifacts.PushedModel, str(tmp_path / f"p{i}"), 300 + i)
        registry_pusher.Executor().Do(
            {"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
            {"custom_config": json.dumps({"registry_root": registry_root, "model": "mnist",
                                          "extra": {"pipeline_name": PIPELINE}})})
        assert pushed.get_int_custom_property("pushed") == 1
    assert [v.name for v in open_registry(registry_root, "mnist").list_versions()] == ["v1", "v2"]
