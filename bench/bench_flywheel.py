"""The feedback loop, measured: accuracy on a drifted stream and on the standard test set before and
after one turn of the loop, the canary share observed, and the time of the cold run vs the retrain.

Runs scripts/flywheel_demo.py (its own state dir, emulator and server) and writes the section
`flywheel` of BENCHMARKS.md. `--quick` prints without writing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import load_average, write_section  # noqa: E402
from scripts.flywheel_demo import HELD_OUT, LABELLED_FIRST, PHASE, plot, run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="print, never write BENCHMARKS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-flywheel-") as tmp:
        r = run(Path(tmp))
    pct = "{:.2%}".format
    share = f"{r.canary_share_configured:.0%} / {(r.canary_share_observed or 0):.1%}"
    cold, warm = r.trainer_s.get("cold", 0.0), r.trainer_s.get("warm", 0.0)
    trainer = f"{cold:.0f} s / {warm:.0f} s" + (f" (warm/cold {warm / cold:.2f})" if cold else "")
    md = f"""## The feedback loop (`bench/bench_flywheel.py`, `make flywheel-demo`)

One turn of the loop on the laptop: quick-profile model v1 serves {PHASE} MNIST test images with
`{r.drift_kind}` drift; `mlpipe monitor` → drift {'detected' if r.drift_detected else 'not detected'}
({', '.join(r.drifted_features) or '-'}); the {LABELLED_FIRST} least confident get their true labels;
`mlpipe flywheel --once` retrains on the feedback and rolls the result out as a canary; {PHASE} more
drifted images are served and labelled; `mlpipe flywheel --once` judges on online accuracy.
Accuracy is measured in process on drifted test images [{HELD_OUT[0]}, {sum(HELD_OUT)}) that no step
saw, and on the 10,000 standard test images.

| measurement | before (v1) | after ({r.served_at_end}) |
|---|---|---|
| accuracy, held-out drifted stream | {pct(r.before['drifted'])} | {pct(r.after['drifted'])} |
| accuracy, standard MNIST test set | {pct(r.before['standard'])} | {pct(r.after['standard'])} |

| measurement | value |
|---|---|
| labels sent (feedback rows) | {r.labels_sent} |
| canary share: configured / observed over {PHASE} images | {share} |
| cold run (`mlpipe run --profile quick`, setup excluded) | {r.cold_run_s:.0f} s |
| warm retrain (`mlpipe flywheel --once --warm-start`: decide + run, one more iteration) | {r.retrain_run_s:.0f} s |
| Trainer alone: cold (first run) / warm (retrain) | {trainer} |

Decisions: {' / '.join(r.decisions)}. The cold run trains every AdaNet iteration on the MNIST
slice; the warm retrain trains one more iteration on top of the serving ensemble, on the slice plus
the feedback (Transform and the Evaluator run again in both). Load average at the end: {load_average()}.
"""
    if args.quick:
        print(md)
        return 0
    plot(r, ROOT / "docs" / "flywheel_demo.png")  # README shows it
    write_section("flywheel", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
