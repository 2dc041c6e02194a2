"""`mlpipe runs` and `mlpipe lineage` read TFMA's evaluation files without TensorFlow, and read them as
TFMA does.

The evaluation directory here is written the way the Evaluator writes it (TFMA's protos in TFRecord
files named `metrics-00000-of-00001.tfrecord`, …, by TensorFlow's own writer), and the ML Metadata store
is a real SQLite store holding one run whose Evaluator output is that directory.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlpipe.config import REPO_ROOT
from mlpipe.metadata import payloads, tfma_files
from tests.conftest import make_settings

ACC = payloads.ACCURACY
CANDIDATE, BASELINE = 0.9731, 0.9512
CONFUSION = {(0, 0): 97, (0, 6): 3, (3, 3): 88, (3, 5): 12}


def write_evaluation(out: Path) -> None:
    """An Evaluator output: overall + one slice metrics, a confusion matrix plot, a failed validation."""
    import tensorflow as tf
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.proto import metrics_for_slice_pb2 as mfs
    from tensorflow_model_analysis.proto import validation_result_pb2 as vr

    overall = mfs.MetricsForSlice()
    for model, value in (("candidate", CANDIDATE), ("baseline", BASELINE)):
        kv = overall.metric_keys_and_values.add()
        kv.key.name, kv.key.model_name = ACC, model
        kv.value.double_value.value = value
    diff = overall.metric_keys_and_values.add()
    diff.key.name, diff.key.model_name, diff.key.is_diff = ACC, "candidate", True
    diff.value.double_value.value = CANDIDATE - BASELINE
    count = overall.metric_keys_and_values.add()
    count.key.name, count.key.model_name = "example_count", "candidate"
    count.value.double_value.value = 200
    sliced = mfs.MetricsForSlice()
    sliced.slice_key.single_slice_keys.add(column="label", int64_value=3)
    kv = sliced.metric_keys_and_values.add()
    kv.key.name, kv.key.model_name = ACC, "candidate"
    kv.value.double_value.value = 0.88

    plots = mfs.PlotsForSlice()
    pkv = plots.plot_keys_and_values.add()
    pkv.key.name, pkv.key.model_name = "multi_class_confusion_matrix_plot", "candidate"
    matrix = pkv.value.multi_class_confusion_matrix_at_thresholds.matrices.add()
    for (actual, predicted), n in CONFUSION.items():
        matrix.entries.add(actual_class_id=actual, predicted_class_id=predicted, num_weighted_examples=n)

    validation = vr.ValidationResult(validation_ok=False)
    per_slice = validation.metric_validations_per_slice.add()
    failure = per_slice.failures.add()
    failure.metric_key.name, failure.metric_key.model_name = ACC, "candidate"
    failure.metric_key.is_diff = True
    failure.metric_value.double_value.value = CANDIDATE - BASELINE
    failure.metric_threshold.change_threshold.absolute.value = 0.05

    out.mkdir(parents=True)
    for name, records in (("metrics-00000-of-00001.tfrecord", [overall, sliced]),
                          ("plots-00000-of-00001.tfrecord", [plots]),
                          ("validations.tfrecord", [validation])):
        with tf.io.TFRecordWriter(str(out / name)) as w:
            for r in records:
                w.write(r.SerializeToString())
    assert tfma.load_validation_result(str(out)).validation_ok is False  # TFMA itself reads it


def write_store(settings, evaluation_uri: Path) -> None:
    """A real MLMD store with one complete run whose Evaluator wrote `evaluation_uri`."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    settings.metadata_path.parent.mkdir(parents=True, exist_ok=True)
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(settings.metadata_path)
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    ctx_types = {n: store.put_context_type(pb.ContextType(name=n)) for n in ("pipeline", "pipeline_run", "node")}
    contexts = [pb.Context(type_id=ctx_types["pipeline"], name=settings.pipeline_name),
                pb.Context(type_id=ctx_types["pipeline_run"], name="run-1"),
                pb.Context(type_id=ctx_types["node"], name=f"{settings.pipeline_name}.Evaluator")]
    for ctx, ctx_id in zip(contexts, store.put_contexts(contexts), strict=True):
        ctx.id = ctx_id
    exec_type = store.put_execution_type(pb.ExecutionType(name="tfx.components.evaluator.component.Evaluator"))
    art_type = store.put_artifact_type(pb.ArtifactType(name="ModelEvaluation"))
    execution = pb.Execution(type_id=exec_type, last_known_state=pb.Execution.COMPLETE)
    artifact = pb.Artifact(type_id=art_type, uri=str(evaluation_uri), state=pb.Artifact.LIVE)
    event = pb.Event(type=pb.Event.OUTPUT)
    event.path.steps.add(key="evaluation")
    event.path.steps.add(index=0)
    store.put_execution(execution, [(artifact, event)], contexts)


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evaluator") / "evaluation"
    write_evaluation(out)
    return out


def _as_text(messages) -> list[str]:
    from google.protobuf import text_format

    return [text_format.MessageToString(m) for m in messages]


def test_reads_what_tfma_reads(evaluation):
    import tensorflow_model_analysis as tfma

    uri = str(evaluation)
    assert _as_text(tfma_files.load_metrics(uri)) == _as_text(tfma.load_metrics(uri))
    assert _as_text(tfma_files.load_plots(uri)) == _as_text(tfma.load_plots(uri))
    assert _as_text([tfma_files.load_validation_result(uri)]) == _as_text([tfma.load_validation_result(uri)])
    assert len(list(tfma_files.load_metrics(uri))) == 2


def test_payload_readers_give_the_evaluation(evaluation):
    uri = str(evaluation)
    assert payloads.evaluation_accuracy(uri) == {"candidate": CANDIDATE, "baseline": BASELINE}
    assert payloads.overall_metrics(uri)["candidate"]["example_count"] == 200
    [failure] = payloads.validation_failures(uri)
    assert (failure.metric, failure.is_diff, failure.bound) == (ACC, True, 0.05)
    matrix = payloads.test_confusion_matrix(uri)
    assert {(a, p): int(matrix[a, p]) for a, p in zip(*matrix.nonzero(), strict=True)} == CONFUSION


def test_a_corrupt_record_is_an_error_not_garbage(evaluation, tmp_path):
    data = bytearray((evaluation / "validations.tfrecord").read_bytes())
    data[20] ^= 0xFF  # a byte of the record's data: its checksum no longer matches
    bad = tmp_path / "validations.tfrecord"
    bad.write_bytes(bytes(data))
    with pytest.raises(tfma_files.CorruptRecordError):
        tfma_files.load_validation_result(str(tmp_path))
    assert payloads.validation_failures(str(tmp_path)) == []  # logged and skipped, as before


@pytest.mark.parametrize("argv", [["runs", "list"], ["runs", "show", "latest"], ["lineage", "--table", "mnist.train"],
                                  ["lineage"]])
def test_report_commands_read_evaluations_without_tensorflow(tmp_path, evaluation, argv):
    """The import closure of the report commands, run on a store with an evaluation to read: no
    TensorFlow, TFMA, TFX or Beam — and the evaluation was read (its accuracy is printed)."""
    settings = make_settings(tmp_path / "state")
    write_store(settings, evaluation)
    args = argv + ["--state-dir", str(settings.state_dir)]
    heavy = ("tensorflow", "tensorflow_model_analysis", "tfx", "apache_beam")
    probe = (f"import sys\nfrom mlpipe.cli import main\nrc = main({args!r})\n"
             f"print('LOADED', sorted(m for m in {heavy!r} if m in sys.modules), rc)")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]  # (the command's own exit code is printed below)
    loaded = proc.stdout.strip().splitlines()[-1]
    assert loaded.startswith("LOADED [] "), loaded
    if argv[0] == "runs":  # the store has no registry versions or tables for `lineage` to report
        assert loaded.endswith(" 0") and f"{CANDIDATE:.2%}" in proc.stdout, proc.stdout
