"""Confidence calibration in numpy: expected calibration error and temperature scaling.

Temperature scaling (Guo et al., 2017) divides the logits by one scalar T > 0 fitted to minimise the
negative log-likelihood on held-out data; T > 1 softens over-confident probabilities, T < 1 sharpens
under-confident ones (label smoothing makes ours under-confident), and the argmax (the predicted
class, hence accuracy) is unchanged. The Trainer fits T on the eval split and bakes it into the
exported graph; `mlpipe monitor` and the benchmarks use `expected_calibration_error`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_BINS = 15
T_RANGE = (0.05, 20.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """Σ_b (n_b / n) · |accuracy_b − mean confidence_b| over `n_bins` equal-width confidence bins,
    where confidence is the top probability and accuracy whether the top class is the label."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ValueError(f"probabilities [n, k] and labels [n] differ: {probabilities.shape} vs {labels.shape}")
    if len(labels) == 0:
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    # Bin b holds confidences in (b/n, (b+1)/n]; a confidence of exactly 0 goes to the first bin.
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(z)), np.asarray(labels).reshape(-1)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in T_RANGE minimising the NLL of softmax(logits / T): a log-spaced grid, then golden-section
    search around its best point (the NLL is unimodal in log T)."""
    labels = np.asarray(labels).reshape(-1)
    if len(labels) == 0:
        return 1.0
    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    grid = np.linspace(lo, hi, 41)
    losses = [negative_log_likelihood(logits, labels, float(np.exp(g))) for g in grid]
    best = int(np.argmin(losses))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = (negative_log_likelihood(logits, labels, float(np.exp(x))) for x in (c, d))
    for _ in range(40):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = negative_log_likelihood(logits, labels, float(np.exp(c)))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = negative_log_likelihood(logits, labels, float(np.exp(d)))
    return float(np.exp((a + b) / 2))


def calibration_report(logits: np.ndarray, labels: np.ndarray, temperature: float, split: str) -> dict[str, Any]:
    """Accuracy, ECE and NLL before (T = 1) and after temperature scaling, JSON-able."""
    labels = np.asarray(labels).reshape(-1)
    before, after = softmax(logits), softmax(logits, temperature)
    return {
        "split": split,
        "n": int(len(labels)),
        "temperature": float(temperature),
        "accuracy": float((before.argmax(axis=1) == labels).mean()) if len(labels) else 0.0,
        "ece_before": expected_calibration_error(before, labels),
        "ece_after": expected_calibration_error(after, labels),
        "nll_before": negative_log_likelihood(logits, labels) if len(labels) else 0.0,
        "nll_after": negative_log_likelihood(logits, labels, temperature) if len(labels) else 0.0,
        "mean_confidence_before": float(before.max(axis=1).mean()) if len(labels) else 0.0,
        "mean_confidence_after": float(after.max(axis=1).mean()) if len(labels) else 0.0,
        "bins": DEFAULT_BINS,
    }
