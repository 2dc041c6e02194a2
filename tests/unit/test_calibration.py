"""Expected calibration error and temperature scaling (mlpipe.calibration), on numbers worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mlpipe.calibration import (
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    softmax,
)


def _probs(confidences, predicted, k=10):
    """Rows whose top probability is `confidence` on class `predicted`, the rest spread evenly."""
    out = np.zeros((len(confidences), k))
    for row, (c, p) in enumerate(zip(confidences, predicted, strict=True)):
        out[row] = (1 - c) / (k - 1)
        out[row, p] = c
    return out


def test_ece_by_hand():
    # Bin (0.933, 1.0]: 3 at 0.95, 2 right → |2/3 − 0.95| · 3/4; bin (0.533, 0.6]: 1 at 0.55, right → 0.45 · 1/4.
    probs = _probs([0.95, 0.95, 0.95, 0.55], [1, 2, 3, 4])
    labels = np.array([1, 2, 0, 4])
    want = 0.75 * abs(2 / 3 - 0.95) + 0.25 * 0.45
    assert expected_calibration_error(probs, labels) == pytest.approx(want, abs=1e-12)


def test_ece_is_zero_when_confidence_matches_accuracy():
    probs = _probs([0.8] * 10, [3] * 10)
    labels = np.array([3] * 8 + [5] * 2)  # 8 of 10 right at confidence 0.8
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_refuses_mismatched_shapes():
    with pytest.raises(ValueError):
        expected_calibration_error(np.ones((3, 10)) / 10, np.zeros(4))


def test_temperature_is_recovered_and_lowers_ece_without_changing_accuracy():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(20_000, 10))
    true_t = 2.5  # the labels follow softmax(logits / 2.5): the raw logits are over-confident
    p = softmax(logits, true_t)
    labels = (p.cumsum(axis=1) > rng.random((len(p), 1))).argmax(axis=1)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(true_t, rel=0.06)
    assert negative_log_likelihood(logits, labels, t) < negative_log_likelihood(logits, labels, 1.0)
    report = calibration_report(logits, labels, t, "synthetic")
    assert report["ece_after"] < 0.02 < report["ece_before"]
    assert (softmax(logits, t).argmax(1) == softmax(logits).argmax(1)).all()
    assert report["accuracy"] == pytest.approx((logits.argmax(1) == labels).mean())


def test_under_confident_logits_get_a_temperature_below_one():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, size=(20_000, 10))
    p = softmax(logits, 0.5)
    labels = (p.cumsum(axis=1) > rng.random((len(p), 1))).argmax(axis=1)
    assert fit_temperature(logits, labels) == pytest.approx(0.5, rel=0.06)
