"""A tiny real AdaNet search on real MNIST rows, then its search report and plots.

One module-scoped training run (SearchSpace.quick(), ~500 rows, 2 iterations) feeds every test
here. How long it takes is measured in bench/, not asserted here.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import tensorflow as tf

from mlpipe.contract import ACCURACY_PLOT_FILE, CANDIDATE_EVALS_FILE, CONFUSION_PLOT_FILE, SEARCH_REPORT_FILE
from mlpipe.data.mnist_source import load_mnist
from models.generators import build_estimator
from models.hparams import SearchSpace
from models.search_report import (
    REPORT_KEYS,
    build_search_report,
    confusion_matrix,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRAIN_ROWS, EVAL_ROWS = 512, 500


def _input_fn(images: np.ndarray, labels: np.ndarray, batch: int, train: bool):
    x = images.astype(np.float32) / 255.0  # what the TFX Transform feeds the trainer

    def input_fn():
        ds = tf.data.Dataset.from_tensor_slices(({"image": x}, labels))
        if train:
            ds = ds.shuffle(len(labels), seed=0).repeat()
        return ds.batch(batch)

    return input_fn


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    data = load_mnist()
    space = SearchSpace.quick()
    model_dir = str(tmp_path_factory.mktemp("adanet") / "model")
    valid, test = data["valid"], data["test"]
    estimator = build_estimator(
        space,
        model_dir,
        eval_input_fn=_input_fn(valid.images[:EVAL_ROWS], valid.labels[:EVAL_ROWS], space.eval_batch_size, False),
    )
    train = data["train"]
    estimator.train(
        _input_fn(train.images[:TRAIN_ROWS], train.labels[:TRAIN_ROWS], space.batch_size, True),
        max_steps=space.total_steps,
    )
    test_fn = _input_fn(test.images[:EVAL_ROWS], test.labels[:EVAL_ROWS], space.eval_batch_size, False)
    y_pred = np.array([int(p["class_ids"][0]) for p in estimator.predict(test_fn, predict_keys=["class_ids"])])
    return {
        "space": space,
        "estimator": estimator,
        "model_dir": model_dir,
        "y_true": test.labels[:EVAL_ROWS],
        "y_pred": y_pred,
    }


def test_tiny_search_trains_its_step_budget_and_learns(searched):
    space = searched["space"]
    assert int(tf.train.load_variable(searched["model_dir"], "global_step")) == space.total_steps
    # 60 steps on 512 rows: far from MNIST-grade, but well above the 10 % of guessing.
    assert np.mean(searched["y_pred"] == searched["y_true"]) > 0.3


def test_evaluator_records_every_candidate_of_every_iteration(searched):
    with open(f"{searched['model_dir']}/{CANDIDATE_EVALS_FILE}") as f:
        records = [json.loads(line) for line in f]
    assert {r["iteration"] for r in records} == {0, 1}
    first = next(r for r in records if r["iteration"] == 0)
    assert len(first["candidates"]) == 4  # dnn_k, dnn_k+1, cnn_n, cnn_n+1, each grown from nothing
    for candidate in first["candidates"]:
        assert 0.0 <= candidate["accuracy"] <= 1.0
        assert candidate["average_loss"] > 0
    assert first["selected"] in {c["name"] for c in first["candidates"]}


def test_report_describes_candidates_and_the_chosen_ensemble(searched):
    report = build_search_report(searched["estimator"], searched["space"], searched["y_true"], searched["y_pred"])
    assert set(report) == set(REPORT_KEYS)
    assert [it["iteration"] for it in report["iterations"]] == [0, 1]
    it0, it1 = report["iterations"]
    assert sorted(it0["subnetworks"]) == ["cnn_1", "cnn_2", "dnn_1", "dnn_2"]
    assert it0["selected"] in {c["name"] for c in it0["candidates"]}
    assert all("accuracy" in c and "train_adanet_loss" in c for c in it0["candidates"])
    # Iteration 1 also offers keeping the iteration-0 ensemble unchanged.
    previous = [c for c in it1["candidates"] if c["is_previous_ensemble"]]
    assert [c["name"] for c in previous] == [it0["selected"]]
    grown = [c for c in it1["candidates"] if not c["is_previous_ensemble"]]
    assert all(len(c["members"]) == 2 for c in grown)

    final = report["final_ensemble"]
    assert final["name"] == it1["selected"]
    assert final["members"] and report["final_architecture_text"].startswith("t0:")
    assert final["valid_accuracy"] == it1["selected_accuracy"]
    assert report["test"]["n"] == len(searched["y_true"])
    assert report["test"]["accuracy"] == pytest.approx(np.mean(searched["y_true"] == searched["y_pred"]))
    assert set(report["subnetworks"]) >= {"t0_cnn_1", "t1_dnn_1"}


def test_report_from_a_model_dir_alone_matches_the_estimator(searched):
    from_dir = build_search_report(searched["model_dir"])
    from_estimator = build_search_report(searched["estimator"])
    assert from_dir == from_estimator
    assert from_dir["test"] is None and from_dir["search_space"] is None


def test_write_report_writes_json_and_png_plots(searched, tmp_path):
    report = build_search_report(searched["model_dir"], searched["space"])
    paths = write_report(report, str(tmp_path / "out"), y_true=searched["y_true"], y_pred=searched["y_pred"])
    assert set(paths) == {"report", "accuracy_plot", "confusion_plot"}
    assert paths["report"].endswith(SEARCH_REPORT_FILE)
    with open(paths["report"]) as f:
        written = json.load(f)
    assert set(written) == set(REPORT_KEYS)
    assert written["test"]["confusion_matrix"] == confusion_matrix(searched["y_true"], searched["y_pred"]).tolist()
    for key, name in (("accuracy_plot", ACCURACY_PLOT_FILE), ("confusion_plot", CONFUSION_PLOT_FILE)):
        assert paths[key].endswith(name)
        with open(paths[key], "rb") as f:
            content = f.read()
        assert content.startswith(PNG_MAGIC) and len(content) > 5_000


def test_write_report_without_test_data_skips_the_confusion_plot(searched, tmp_path):
    paths = write_report(build_search_report(searched["model_dir"]), str(tmp_path))
    assert set(paths) == {"report", "accuracy_plot"}
    assert not (tmp_path / CONFUSION_PLOT_FILE).exists()


def test_confusion_matrix_counts_true_by_predicted():
    matrix = confusion_matrix([0, 1, 1, 9], [0, 1, 7, 9])
    assert matrix.shape == (10, 10)
    assert matrix[1, 7] == 1 and matrix[1, 1] == 1 and np.trace(matrix) == 3
    with pytest.raises(ValueError, match="differ in length"):
        confusion_matrix([0, 1], [0])


def _copy_tree_gfile(src: str, dst: str) -> None:
    for dirpath, _dirs, files in tf.io.gfile.walk(src):
        target = dst + dirpath[len(src):]
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(f"{dirpath}/{name}", f"{target}/{name}", overwrite=True)


def test_report_reads_and_writes_a_non_local_filesystem(searched, tmp_path, monkeypatch):
    """In the cloud model_dir and the SavedModel are gs:// URLs; TensorFlow's in-memory `ram://`
    filesystem stands in for them offline. A local-only call (open, os.makedirs, glob) would miss the
    files or write a `ram:` directory into the working directory instead."""
    monkeypatch.chdir(tmp_path)
    remote_dir = f"ram://search-report-{time.time_ns()}/model"
    _copy_tree_gfile(searched["model_dir"], remote_dir)
    local = build_search_report(searched["model_dir"], searched["space"])
    remote = build_search_report(remote_dir, searched["space"])
    assert remote["iterations"] and {**remote, "model_dir": None} == {**local, "model_dir": None}
    out = f"{remote_dir}/serving/assets.extra"
    paths = write_report(remote, out, y_true=searched["y_true"], y_pred=searched["y_pred"])
    assert all(p.startswith("ram://") for p in paths.values())
    with tf.io.gfile.GFile(paths["report"]) as f:
        assert json.load(f)["test"]["n"] == len(searched["y_true"])
    for key in ("accuracy_plot", "confusion_plot"):
        with tf.io.gfile.GFile(paths[key], "rb") as f:
            assert f.read().startswith(PNG_MAGIC)
    assert list(tmp_path.iterdir()) == []  # nothing landed on the local disk
