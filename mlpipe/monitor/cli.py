"""`mlpipe monitor` (drift of served instances vs training data) and `mlpipe simulate-traffic`
(a drifted or clean stream of MNIST test images sent to a running server)."""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mlpipe.config import Settings
from mlpipe.registry.cli import add_registry_flags, registry_settings

EXIT_DRIFT = 3  # 0: no drift; 1/2: errors (as every command)
_RELATIVE = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """`30m`, `2h`, `1d` (ago) or an ISO 8601 time (UTC unless it says otherwise)."""
    from mlpipe.errors import UsageError

    now = now or datetime.now(timezone.utc)
    m = _RELATIVE.fullmatch(text.strip())
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"not a time: {text!r} (use e.g. 30m, 2h, 1d or 2026-12-02T09:00:00Z)") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _monitor(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.monitor import report as rep

    settings = registry_settings(args, settings)
    config = rep.MonitorConfig(
        since=parse_time(args.since) if args.since else None,
        until=parse_time(args.until) if args.until else None,
        version=args.version,
        thresholds=dict(rep.parse_threshold(t) for t in args.threshold),
        default_threshold=args.default_threshold,
        reference_size=args.reference_size,
        min_instances=args.min_instances,
    )
    report, data = rep.monitor(settings, config)
    path = rep.save(settings, report, data, Path(args.plot) if args.plot else None)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(rep.table_text(report))
        print(f"report {path} (plot beside it{', and ' + args.plot if args.plot else ''}); "
              f"ML Metadata execution {report['mlmd_execution_id']}")
    return EXIT_DRIFT if report["drift"] else 0


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.client import PredictionClient
    from mlpipe.data.drift import drifted_test_stream

    settings = registry_settings(args, settings)
    images = drifted_test_stream(args.drift, n=args.n, severity=args.severity, start=args.start)
    client = PredictionClient(args.url, project=settings.project, model=settings.model_name)
    result = client.predict(images, batch_size=args.batch_size, version=args.version, progress=not args.quiet)
    conf = result.confidence
    print(f"sent {len(result)} MNIST test images [{args.start}, {args.start + args.n}) with drift "
          f"{args.drift!r} (severity {args.severity:g}) to {settings.model_name}/{result.version} at {args.url}; "
          f"mean confidence {conf.mean():.3f}")
    return 0


def _severity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"severity must be a number in [0, 1], not {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"severity must be in [0, 1], not {value}")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return int(text)


def register(sub, add_settings_flags) -> None:
    from mlpipe.data.drift import KINDS
    from mlpipe.monitor.report import ALL_FEATURES, DEFAULT_REFERENCE_SIZE, DEFAULT_THRESHOLD

    p = sub.add_parser(
        "monitor", help="drift of served instances vs the serving model's training data",
        description="Read the instances a model version served in a window (BigQuery DATASET.predictions), "
        "compute TFDV statistics of image features (ink mass, bounding box, centroid, stroke width), "
        "predicted class and confidence, and compare them with the same statistics of the training data "
        "the version was trained on (found through its ML Metadata lineage). Writes a JSON report and a "
        "plot under STATE_DIR/monitor/, records the run in ML Metadata against the version. "
        f"Exit code {EXIT_DRIFT} = drift, 0 = no drift.",
    )
    p.add_argument("--since", help="window start: 30m, 2h, 1d (ago) or an ISO time (default: everything)")
    p.add_argument("--until", help="window end, same forms (default: now)")
    p.add_argument("--version", help="registry version (default: the default version)")
    p.add_argument("--threshold", action="append", default=[], metavar="FEATURE=JSD",
                   help=f"Jensen-Shannon divergence above which FEATURE drifts; FEATURE in {', '.join(ALL_FEATURES)}")
    p.add_argument("--default-threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"threshold of the other features (default {DEFAULT_THRESHOLD})")
    p.add_argument("--reference-size", type=_positive, default=DEFAULT_REFERENCE_SIZE,
                   help=f"training examples in the reference sample (default {DEFAULT_REFERENCE_SIZE})")
    p.add_argument("--min-instances", type=_positive, default=50,
                   help="fewest served instances to judge (default 50)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("--plot", help="also write the plot (PNG) here")
    add_registry_flags(p)
    add_settings_flags(p)
    p.set_defaults(handler=_monitor)

    p = sub.add_parser(
        "simulate-traffic", help="send (drifted) MNIST test images to a running server",
        description="Deterministic transformations of the MNIST test images (nothing downloaded) sent to "
        "`mlpipe serve`: none, thick (strokes), rotate, invert, shift or mixed.",
    )
    p.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL")
    p.add_argument("--drift", choices=KINDS, default="none", help="transformation (default none)")
    p.add_argument("--severity", type=_severity, default=1.0, help="0 (none) .. 1 (full), default 1")
    p.add_argument("-n", type=_positive, default=500, help="images to send (default 500)")
    p.add_argument("--start", type=int, default=0, help="first test image (default 0)")
    p.add_argument("--version", help="registry version to send to (default: the default version)")
    p.add_argument("--batch-size", type=_positive, default=100, help="instances per request (default 100)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_registry_flags(p)
    add_settings_flags(p)
    p.set_defaults(handler=_simulate)
