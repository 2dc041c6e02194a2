"""`mlpipe monitor` over real parts: a served window in the BigQuery emulator's prediction log, the
version's training examples found through an ML Metadata store's lineage, TFDV comparing them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone

import numpy as np
import pytest

from mlpipe.bigquery.client import query_rows
from mlpipe.config import REPO_ROOT
from mlpipe.data.drift import KINDS, drifted
from mlpipe.errors import NotFoundError
from mlpipe.monitor.features import image_features
from mlpipe.registry import registry_for
from tests.contract_models import fake_models  # noqa: F401  (a fixture)
from tests.serving.server import cli_flags, start_server


def test_drift_transforms_are_deterministic_and_move_the_features():
    from mlpipe.data.mnist_source import load_mnist

    images = load_mnist()["test"].images[:200]
    base = {k: v.mean() for k, v in image_features(images).items()}
    for kind in KINDS:
        out = drifted(images, kind)
        assert out.shape == (200, 784) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, drifted(images, kind))  # deterministic
    np.testing.assert_array_equal(drifted(images, "none"), images)
    np.testing.assert_array_equal(drifted(images, "thick", 0.0), images)
    moved = {kind: {k: v.mean() for k, v in image_features(drifted(images, kind)).items()} for kind in KINDS}
    assert moved["thick"]["stroke_width"] > 1.5 * base["stroke_width"]
    assert moved["invert"]["ink_mass"] > 5 * base["ink_mass"]
    assert moved["shift"]["centroid_x"] > base["centroid_x"] + 4
    assert moved["shift"]["centroid_y"] > base["centroid_y"] + 4
    assert abs(moved["rotate"]["bbox_width"] - base["bbox_width"]) > 2
    assert abs(moved["rotate"]["ink_mass"] - base["ink_mass"]) < 0.05 * base["ink_mass"]


def test_compare_flags_thick_strokes_and_not_a_clean_sample():
    from mlpipe.data.mnist_source import load_mnist
    from mlpipe.monitor import report as rep

    data = load_mnist()
    train, test = data["train"].images[:1500], data["test"].images[:800]
    classes = {"train": data["train"].labels[:1500], "test": data["test"].labels[:800]}

    def table(images, labels):
        return rep.feature_table(images, labels, np.full(len(labels), 0.99))

    reference = table(train, classes["train"])
    clean = rep.compare(table(test[:400], classes["test"][:400]), reference, rep.MonitorConfig())
    assert not any(r["drift"] for r in clean), clean
    thick = rep.compare(table(drifted(test[400:], "thick"), classes["test"][400:]), reference, rep.MonitorConfig())
    flagged = {r["feature"] for r in thick if r["drift"]}
    assert {"ink_mass", "stroke_width"} <= flagged and "predicted_class" not in flagged
    stricter = rep.compare(table(test[:400], classes["test"][:400]), reference,
                           rep.MonitorConfig(thresholds={"bbox_height": 0.001}))
    assert [r["feature"] for r in stricter if r["drift"]] == ["bbox_height"]  # thresholds are per feature


def _training_store(settings, examples_dir) -> int:
    """An ML Metadata store shaped as TFX writes one (pipeline, pipeline_run and node contexts) with
    ExampleGen → Examples → (StatisticsGen, Trainer → Model); the Model's id."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    settings.metadata_path.parent.mkdir(parents=True, exist_ok=True)
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(settings.metadata_path)
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    pipeline_type = store.put_context_type(pb.ContextType(name="pipeline"))
    run_type = store.put_context_type(pb.ContextType(name="pipeline_run"))
    node_type = store.put_context_type(pb.ContextType(name="node"))
    [pipeline, run_ctx] = store.put_contexts([pb.Context(type_id=pipeline_type, name=settings.pipeline_name),
                                              pb.Context(type_id=run_type, name="run-1")])
    types = {n: store.put_artifact_type(pb.ArtifactType(name=n)) for n in ("Examples", "ExampleStatistics", "Model")}

    def run(component: str, inputs: dict, outputs: dict) -> dict:
        etype = store.put_execution_type(pb.ExecutionType(name=component))
        made = {}
        events = []
        for key, art in inputs.items():
            e = pb.Event(type=pb.Event.INPUT)
            e.path.steps.add().key = key
            events.append((art, e))
        for key, (kind, uri) in outputs.items():
            art = pb.Artifact(type_id=types[kind], uri=uri, state=pb.Artifact.LIVE)
            [art.id] = store.put_artifacts([art])
            made[key] = art
            e = pb.Event(type=pb.Event.OUTPUT)
            e.path.steps.add().key = key
            events.append((art, e))
        execution = pb.Execution(type_id=etype, last_known_state=pb.Execution.COMPLETE)
        contexts = [pb.Context(id=pipeline, type_id=pipeline_type, name=settings.pipeline_name),
                    pb.Context(id=run_ctx, type_id=run_type, name="run-1"),
                    pb.Context(type_id=node_type, name=f"{settings.pipeline_name}.{component}")]
        store.put_execution(execution, events, contexts, reuse_context_if_already_exist=True)
        return made

    examples = run("ExampleGen", {}, {"examples": ("Examples", str(examples_dir))})["examples"]
    run("StatisticsGen", {"examples": examples}, {"statistics": ("ExampleStatistics", str(examples_dir) + "-stats")})
    return run("Trainer", {"examples": examples}, {"model": ("Model", str(examples_dir) + "-model")})["model"].id


def _write_examples(path, images, labels) -> None:
    import tensorflow as tf

    path.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(path / "data_tfrecord-00000-of-00001.gz"), options="GZIP") as w:
        for image, label in zip(images, labels, strict=True):
            feature = {"image": tf.train.Feature(int64_list=tf.train.Int64List(value=image.astype(np.int64))),
                       "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))}
            w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


@pytest.fixture(scope="module")
def monitored(bq_settings, tmp_path_factory, fake_models):  # noqa: F811
    from mlpipe.data.mnist_source import load_mnist

    state = tmp_path_factory.mktemp("monitor-state")
    settings = bq_settings.replace(state_dir=state, dataset="monitortest", log_predictions=True)
    train = load_mnist()["train"]
    _write_examples(state / "examples" / "Split-train", train.images[:1500], train.labels[:1500])
    model_id = _training_store(settings, state / "examples")
    registry_for(settings).push(fake_models[0], {"model_artifact_id": model_id})
    server = start_server(settings, state)
    # The first prediction imports TensorFlow and loads the model; not inside the timed client calls.
    # (Its instance lands in the log before t0 of any test, so no window below counts it.)
    status, _, _ = server.request("POST", "/v1/models/mnist:predict", {"instances": [[0] * 784]}, timeout=300)
    assert status == 200, server.log()[-3000:]
    yield settings, server, model_id
    server.stop()


def _mlpipe(*args, settings, timeout=600):
    cmd = [sys.executable, "-m", "mlpipe.cli", *args, *cli_flags(settings)]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def _logged(settings, n: int, since: datetime) -> None:
    deadline = time.monotonic() + 90
    sql = (f"SELECT COUNT(*) AS n FROM `{settings.table_id('predictions')}` "
           f"WHERE time >= TIMESTAMP('{since.isoformat()}')")
    while True:
        try:
            if query_rows(settings, sql)[0]["n"] >= n:
                return
        except NotFoundError:
            pass
        assert time.monotonic() < deadline, f"{n} prediction log rows did not arrive"
        time.sleep(1)


@pytest.mark.e2e
def test_monitor_flags_a_drifted_window_and_not_a_clean_one(monitored, tmp_path):
    settings, server, model_id = monitored
    t0 = datetime.now(timezone.utc)
    out = _mlpipe("simulate-traffic", "--url", server.url, "--drift", "none", "-n", "400", "-q",
                  settings=settings)
    assert out.returncode == 0, out.stderr
    _logged(settings, 400, t0)
    t1 = datetime.now(timezone.utc)
    out = _mlpipe("simulate-traffic", "--url", server.url, "--drift", "thick", "-n", "400", "--start", "400",
                  "-q", settings=settings)
    assert out.returncode == 0, out.stderr
    _logged(settings, 400, t1)

    # The contract model has random weights: which class it picks is noise, so its class distribution
    # differs between any two image samples (JS ~0.12 for these two); a real model's does not.
    random_model = ("--threshold", "predicted_class=0.3")
    clean = _mlpipe("monitor", "--since", t0.isoformat(), "--until", t1.isoformat(), "--json",
                    "--reference-size", "1500", *random_model, settings=settings)
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-3000:]
    report = json.loads(clean.stdout)
    assert report["drift"] is False and report["window"]["instances"] == 400
    assert report["reference"]["model_artifact_id"] == model_id and report["reference"]["instances"] == 1500

    plot = tmp_path / "drift.png"
    drift = _mlpipe("monitor", "--since", t1.isoformat(), "--plot", str(plot), "--reference-size", "1500",
                    *random_model, settings=settings)
    assert drift.returncode == 3, drift.stdout[-3000:] + drift.stderr[-3000:]
    assert "DRIFT" in drift.stdout and "stroke_width" in drift.stdout
    assert plot.stat().st_size > 10_000

    # Both runs are in ML Metadata, against the model artifact of the version.
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(settings.metadata_path)
    store = metadata_store.MetadataStore(config)
    runs = store.get_executions_by_type("DriftMonitor")
    assert [r.properties["drift"].int_value for r in runs] == [0, 1]
    assert {r.properties["version"].string_value for r in runs} == {"v1"}
    events = store.get_events_by_execution_ids([r.id for r in runs])
    assert sum(1 for e in events if e.artifact_id == model_id and e.type == pb.Event.INPUT) == 2


@pytest.mark.e2e
def test_monitor_refuses_an_empty_window_in_one_line(monitored):
    settings, _, _ = monitored
    out = _mlpipe("monitor", "--since", "2001-01-01T00:00:00Z", "--until", "2001-01-02T00:00:00Z",
                  settings=settings)
    assert out.returncode == 1 and "only 0 instances" in out.stderr and "Traceback" not in out.stderr
    bad = _mlpipe("monitor", "--threshold", "nope=0.1", settings=settings)
    assert bad.returncode == 2 and "--threshold" in bad.stderr
