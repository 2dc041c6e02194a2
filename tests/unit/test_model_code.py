"""The model code without the orchestrator, as the TFX templates test theirs: `preprocessing_fn` on a
tiny batch, the input function over real Transform output, and `run_fn` end to end on 96 real MNIST
rows, whose exported SavedModel must fulfil the serving contract through both signatures."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils
from tfx.components.trainer.fn_args_utils import FnArgs

from mlpipe import contract
from mlpipe.data.mnist_source import load_mnist
from mlpipe.registry.signature_check import check_contract
from models import model, precision, preprocessing
from models.hparams import SearchSpace, TrainingConfig

RAW_SPEC = {
    contract.IMAGE_KEY: tf.io.FixedLenFeature([contract.IMAGE_PIXELS], tf.int64),
    contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
}


def test_preprocessing_scales_pixels_and_keeps_the_label():
    image = np.zeros((2, contract.IMAGE_PIXELS), np.int64)
    image[0, :3] = [0, 127, 255]
    out = preprocessing.preprocessing_fn({
        contract.IMAGE_KEY: tf.constant(image),
        contract.LABEL_KEY: tf.constant([3, 9], tf.int64),
        contract.ROW_KEY: tf.constant([0, 1], tf.int64),
    })
    assert set(out) == {contract.IMAGE_KEY, contract.LABEL_KEY}  # the row key is not a feature
    pixels = out[contract.IMAGE_KEY].numpy()
    assert pixels.dtype == np.float32 and pixels.shape == (2, contract.IMAGE_PIXELS)
    assert pixels[0, :3].tolist() == pytest.approx([0.0, 127 / 255, 1.0])
    assert out[contract.LABEL_KEY].numpy().tolist() == [3, 9]


def test_preprocessing_serves_unlabelled_instances():
    out = preprocessing.preprocessing_fn({contract.IMAGE_KEY: tf.zeros((1, contract.IMAGE_PIXELS), tf.int64)})
    assert set(out) == {contract.IMAGE_KEY}


def test_training_config_round_trips_through_custom_config():
    cfg = TrainingConfig(search=SearchSpace.quick().replace(families=("cnn",), max_iteration_steps=7), eval_steps=3)
    as_json = json.loads(json.dumps({"training": cfg.to_custom_config()}))  # what TFX stores and hands back
    assert TrainingConfig.from_custom_config(as_json) == cfg
    assert TrainingConfig.from_custom_config(None) == TrainingConfig()
    assert cfg.train_steps == 7 * cfg.search.max_iterations


@pytest.mark.parametrize("given, message", [
    ({"training": {"epochs": 3}}, "unknown training settings: \\['epochs'\\]"),
    ({"training": {"search": {"depth": 3}}}, "unknown search settings: \\['depth'\\]"),
    ({"training": {"search": {"families": ["rnn"]}}}, "families must be a non-empty subset"),
])
def test_training_config_refuses_what_it_does_not_know(given, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig.from_custom_config(given)


def _examples(images: np.ndarray, labels: np.ndarray) -> list[bytes]:
    out = []
    for image, label in zip(images, labels, strict=True):
        feature = {
            contract.IMAGE_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=image.astype(np.int64))),
            contract.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        }
        out.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return out


@pytest.fixture(scope="module")
def transformed(tmp_path_factory) -> dict:
    """`preprocessing_fn` run by tf.Transform on Beam, as the Transform component runs it: the
    transform graph and gzipped transformed examples of 64 train and 32 eval rows of real MNIST."""
    root = tmp_path_factory.mktemp("transform")
    data = load_mnist()
    splits = {"train": (data["train"].images[:64], data["train"].labels[:64]),
              "eval": (data["valid"].images[:32], data["valid"].labels[:32])}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=str(root / "tmp")):
        raw = {name: p | f"Raw{name}" >> beam.Create(_examples(*rows)) for name, rows in splits.items()}
        decoded = {name: pc | f"Decode{name}" >> beam.Map(_decode) for name, pc in raw.items()}
        (train_out, out_metadata), transform_fn = (
            (decoded["train"], metadata) | tft_beam.AnalyzeAndTransformDataset(
                preprocessing.preprocessing_fn, output_record_batches=False))
        eval_out, _ = ((decoded["eval"], metadata), transform_fn) | tft_beam.TransformDataset()
        _ = transform_fn | tft_beam.WriteTransformFn(str(root / "transform_graph"))
        # The raw schema beside it, as the Transform component writes it (the serving receiver reads it).
        _ = metadata | tft_beam.WriteMetadata(str(root / "transform_graph" / "metadata"), p)
        coder = tft.coders.ExampleProtoCoder(out_metadata.schema)
        for name, pc in (("train", train_out), ("eval", eval_out)):
            _ = (pc | f"Encode{name}" >> beam.Map(coder.encode)
                 | f"Write{name}" >> beam.io.WriteToTFRecord(str(root / name / "data"), file_name_suffix=".gz"))
    return {"root": root, "graph": str(root / "transform_graph"), "labels": {k: v[1] for k, v in splits.items()},
            "files": {name: str(root / name / "data*.gz") for name in splits}}


def _decode(serialized: bytes) -> dict:
    parsed = tf.io.parse_single_example(serialized, RAW_SPEC)
    return {k: v.numpy() for k, v in parsed.items()}


def test_input_fn_yields_normalized_images_and_labels(transformed):
    tft_output = tft.TFTransformOutput(transformed["graph"])
    input_fn = model.make_input_fn(transformed["files"]["eval"], tft_output, batch_size=32, shuffle=False,
                                   repeat=False)
    batches = list(input_fn())
    assert len(batches) == 1
    features, labels = batches[0]
    assert set(features) == {contract.IMAGE_KEY}
    images = features[contract.IMAGE_KEY].numpy()
    assert images.shape == (32, contract.IMAGE_PIXELS) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.5
    assert sorted(labels.numpy().tolist()) == sorted(transformed["labels"]["eval"].tolist())


@pytest.mark.parametrize("shuffle", [True, False])
def test_parsing_once_gives_the_same_batches(transformed, monkeypatch, shuffle):
    """The cached, parse-once pipeline feeds the model exactly what the per-batch parse fed it: same
    images and labels in the same order, across parse batches and epoch boundaries."""
    monkeypatch.setattr(model, "PARSE_BATCH", 10)  # several parse batches over the 64 rows
    tft_output = tft.TFTransformOutput(transformed["graph"])

    def batches(parse_once: bool) -> list:
        input_fn = model.make_input_fn(transformed["files"]["train"], tft_output, batch_size=24, shuffle=shuffle,
                                       repeat=True, seed=7, parse_once=parse_once)
        return [(f[contract.IMAGE_KEY].numpy(), y.numpy()) for f, y in input_fn().take(9)]  # > 3 epochs

    new, old = batches(True), batches(False)
    assert [y.tolist() for _, y in new] == [y.tolist() for _, y in old]
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(new, old, strict=True))
    assert new[0][0].shape == (24, contract.IMAGE_PIXELS)


def _run_fn(transformed, out: Path) -> dict:
    """`run_fn` as the Trainer calls it, with a tiny search (2 iterations × 3 steps); the training
    graph is saved with the checkpoints (`.meta`) for the tests that inspect it."""
    training = TrainingConfig(search=SearchSpace.quick().replace(max_iteration_steps=3), eval_steps=1)
    fn_args = FnArgs(
        train_files=[transformed["files"]["train"]],
        eval_files=[transformed["files"]["eval"]],
        transform_output=transformed["graph"],
        serving_model_dir=str(out / "model" / "Format-Serving"),
        model_run_dir=str(out / "model_run"),
        train_steps=training.train_steps,
        eval_steps=training.eval_steps,
        custom_config={"training": training.to_custom_config()},
    )
    with mock.patch.object(model, "SAVE_GRAPH_DEF", True):
        model.run_fn(fn_args)
    return {"serving": Path(fn_args.serving_model_dir), "model_run": Path(fn_args.model_run_dir),
            "training": training}


@pytest.fixture(scope="module")
def trained(transformed, tmp_path_factory) -> dict:
    return _run_fn(transformed, tmp_path_factory.mktemp("trainer"))


def _summary(run: dict) -> dict:
    return json.loads((run["model_run"] / contract.TRAINING_SUMMARY_FILE).read_text())


def _graph_dtypes(meta_graphs) -> set[str]:
    """Every dtype an op of these MetaGraphDefs is typed with."""
    return {tf.dtypes.as_dtype(attr.type).name for mg in meta_graphs for node in mg.graph_def.node
            for attr in node.attr.values() if attr.WhichOneof("value") == "type"}


def _saved_model_dtypes(serving: Path) -> set[str]:
    from tensorflow.core.protobuf import saved_model_pb2

    return _graph_dtypes(saved_model_pb2.SavedModel.FromString((serving / "saved_model.pb").read_bytes()).meta_graphs)


def _training_graph_dtypes(model_run: Path) -> set[str]:
    from tensorflow.core.protobuf import meta_graph_pb2

    metas = sorted(model_run.glob("model.ckpt-*.meta"))
    assert metas, f"no training graph saved in {model_run}"
    return _graph_dtypes([meta_graph_pb2.MetaGraphDef.FromString(metas[-1].read_bytes())])


def test_run_fn_trains_in_float32_without_amx(trained):
    expected = precision.training_policy()  # float32 on these AMD machines
    assert _summary(trained)["precision"] == expected
    assert tf.keras.mixed_precision.global_policy().name == "float32"  # left as it was
    if expected == precision.FLOAT32:
        assert "bfloat16" not in _training_graph_dtypes(trained["model_run"])


def test_bf16_training_exports_a_float32_model(transformed, tmp_path, monkeypatch):
    """Forced bf16 (what an AMX machine gets): the candidates train in bf16, the export is float32."""
    monkeypatch.setenv(precision.ENV_VAR, precision.MIXED_BF16)
    run = _run_fn(transformed, tmp_path)
    assert _summary(run)["precision"] == precision.MIXED_BF16
    assert tf.keras.mixed_precision.global_policy().name == "float32"
    assert "bfloat16" in _training_graph_dtypes(run["model_run"])
    assert "bfloat16" not in _saved_model_dtypes(run["serving"])
    loaded = tf.saved_model.load(str(run["serving"]))
    out = loaded.signatures[contract.SERVING_SIGNATURE](
        **{contract.IMAGE_KEY: tf.constant(load_mnist()["test"].images[:4], tf.float32)})
    np.testing.assert_allclose(out[contract.PROBABILITIES_KEY].numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_run_fn_exports_the_serving_contract(trained):
    signatures = check_contract(trained["serving"])  # raises if the contract is not met
    assert {contract.SERVING_SIGNATURE, contract.EXAMPLES_SIGNATURE} <= set(signatures)
    assert set(signatures[contract.EXAMPLES_SIGNATURE]["inputs"]) == {contract.EXAMPLES_INPUT}
    assert set(signatures[contract.EXAMPLES_SIGNATURE]["outputs"]) == set(contract.PREDICTION_KEYS)


def test_both_signatures_give_the_same_answers_on_raw_pixels(trained):
    data = load_mnist()["test"]
    images, labels = data.images[:8], data.labels[:8]
    loaded = tf.saved_model.load(str(trained["serving"]))
    by_pixels = loaded.signatures[contract.SERVING_SIGNATURE](
        **{contract.IMAGE_KEY: tf.constant(images, tf.float32)})
    by_examples = loaded.signatures[contract.EXAMPLES_SIGNATURE](
        **{contract.EXAMPLES_INPUT: tf.constant(_examples(images, labels))})
    for key in contract.PREDICTION_KEYS:
        np.testing.assert_allclose(by_pixels[key].numpy(), by_examples[key].numpy(), rtol=1e-5, atol=1e-6)
    probabilities = by_pixels[contract.PROBABILITIES_KEY].numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert by_pixels["class_ids"].numpy().reshape(-1).tolist() == probabilities.argmax(axis=1).tolist()


def test_run_fn_leaves_its_report_and_summary_where_readers_look(trained):
    report = json.loads((trained["serving"] / contract.SEARCH_REPORT_DIR / contract.SEARCH_REPORT_FILE).read_text())
    assert len(report["iterations"]) == trained["training"].search.max_iterations
    assert (trained["serving"] / contract.SEARCH_REPORT_DIR / contract.ACCURACY_PLOT_FILE).is_file()
    summary = json.loads((trained["model_run"] / contract.TRAINING_SUMMARY_FILE).read_text())
    assert TrainingConfig.from_custom_config({"training": summary["training"]}) == trained["training"]
    assert summary["final_ensemble"] == report["final_ensemble"]
    # The export's temporary directory is gone; only the SavedModel is left where TFX looks.
    assert not Path(str(trained["serving"]) + ".export").exists()


def test_the_last_iterations_candidates_are_evaluated_once(trained):
    """`evaluate` selects the final ensemble; predicting the eval split (calibration) and exporting
    reuse that choice instead of re-running AdaNet's candidate evaluation in each call."""
    lines = (trained["model_run"] / contract.CANDIDATE_EVALS_FILE).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    iterations = trained["training"].search.max_iterations
    assert [r["iteration"] for r in records] == list(range(iterations))  # one evaluation per iteration
    summary = _summary(trained)
    assert summary["final_ensemble"]["name"] == records[-1]["selected"]
    seconds = summary["seconds"]
    assert seconds["steps"] == trained["training"].search.total_steps
    assert 0 < seconds["train_steps"] < seconds["train"]


def test_exported_probabilities_are_softmax_of_logits_over_the_fitted_temperature(trained):
    from mlpipe.calibration import softmax

    report = json.loads((trained["serving"] / contract.SEARCH_REPORT_DIR / contract.SEARCH_REPORT_FILE).read_text())
    cal = report["calibration"]
    assert cal["split"] == "eval" and cal["n"] == 32 and 0 < cal["temperature"]
    assert abs(cal["temperature"] - 1) > 0.05, "too close to 1 to tell calibrated from raw probabilities"
    for key in ("accuracy", "ece_before", "ece_after"):
        assert 0 <= cal[key] <= 1
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9  # T minimises the eval NLL, T = 1 included
    images, labels = load_mnist()["test"].images[:16], load_mnist()["test"].labels[:16]
    loaded = tf.saved_model.load(str(trained["serving"]))
    for name, kwargs in (
        (contract.SERVING_SIGNATURE, {contract.IMAGE_KEY: tf.constant(images, tf.float32)}),
        (contract.EXAMPLES_SIGNATURE, {contract.EXAMPLES_INPUT: tf.constant(_examples(images, labels))}),
    ):
        out = loaded.signatures[name](**kwargs)
        logits = out["logits"].numpy()
        np.testing.assert_allclose(out["probabilities"].numpy(), softmax(logits, cal["temperature"]),
                                   rtol=1e-4, atol=1e-6)
        assert out["class_ids"].numpy().ravel().tolist() == logits.argmax(axis=1).tolist()
