"""The Evaluator's gates: MNIST stays the main gate; with feedback, its slice must not regress."""

from __future__ import annotations

import dataclasses

from mlpipe import contract
from mlpipe.config import load_settings


def _gates(tmp_path, feedback_rows):
    from pipeline.configs import PipelineConfig
    from pipeline.pipeline import eval_config

    cfg = dataclasses.replace(PipelineConfig.for_profile(load_settings(environ={}, state_dir=tmp_path), "quick"),
                              feedback_rows=feedback_rows)
    ec = eval_config(cfg)
    accuracy = next(m for m in ec.metrics_specs[0].metrics if m.class_name == "SparseCategoricalAccuracy")
    gates = {}
    for t in accuracy.per_slice_thresholds:
        (spec,) = t.slicing_specs
        key = dict(spec.feature_values).get(contract.SOURCE_KEY, "overall")
        gates[key] = (t.threshold.HasField("value_threshold"), t.threshold.HasField("change_threshold"))
    slices = [tuple(s.feature_keys) for s in ec.slicing_specs]
    return gates, slices


def test_without_feedback_the_overall_slice_is_gated(tmp_path):
    gates, slices = _gates(tmp_path, None)
    assert gates == {"overall": (True, True)}
    assert (contract.SOURCE_KEY,) not in slices


def test_with_feedback_mnist_keeps_floor_and_feedback_must_not_regress(tmp_path):
    gates, slices = _gates(tmp_path, {"train": 80, "eval": 10, "test": 10})
    assert gates == {str(contract.SOURCE_MNIST): (True, True), str(contract.SOURCE_FEEDBACK): (False, True)}
    assert (contract.SOURCE_KEY,) in slices


def test_feedback_without_test_rows_is_reported_not_gated(tmp_path):
    # TFMA fails a validation whose slice is missing, so an empty feedback test share is not gated.
    gates, slices = _gates(tmp_path, {"train": 5, "eval": 0, "test": 0})
    assert gates == {str(contract.SOURCE_MNIST): (True, True)}
    assert (contract.SOURCE_KEY,) in slices
