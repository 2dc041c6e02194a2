"""The Evaluator's "no regression vs the baseline" gate on its own, from the side where it blesses.

The `two_runs` fixture's v1 is a one-step model pushed with the floor at 0; v2 is an ordinary quick
model evaluated against it with regression tolerance 0. (The side where it refuses, a model above the
floor but below its baseline, is `test_pipeline_local.py::test_model_above_floor_but_below_baseline_*`.)
"""

from __future__ import annotations

import pytest

from mlpipe.registry import registry_for

pytestmark = pytest.mark.e2e


def test_model_above_its_baseline_is_blessed_with_tolerance_zero(two_runs):
    first, second = two_runs.first, two_runs.second
    assert two_runs.config.regression_tolerance == 0.0
    assert first.blessed is True and first.pushed_version == "v1"
    # The second run was compared with v1's model (MLMD), and beat it.
    evaluator = next(c for c in second.components if c.component == "Evaluator")
    baseline = [link.artifact_id for link in evaluator.inputs if link.key == "baseline_model"]
    assert baseline == [first.model_artifact_id]
    assert second.baseline_accuracy == pytest.approx(first.accuracy)
    assert second.accuracy > first.accuracy
    assert second.accuracy >= two_runs.config.accuracy_floor
    assert second.blessed is True and second.outcome == "pushed v2"
    assert registry_for(two_runs.settings).resolve().name == "v2"
