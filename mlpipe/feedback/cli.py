"""`mlpipe feedback`: write a label for a served prediction, or a labelled example, to DATASET.feedback."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

from mlpipe.config import Settings
from mlpipe.registry.cli import add_registry_flags, registry_settings


def _document(args: argparse.Namespace) -> dict[str, Any]:
    from mlpipe.errors import NotFoundError, UsageError

    if args.prediction_id is not None:
        return {"predictionId": args.prediction_id, "label": args.label}
    path = Path(args.image)
    if not path.is_file():
        raise NotFoundError(f"image file {args.image} does not exist")
    if path.suffix.lower() == ".png":
        return {"image_bytes": {"b64": base64.b64encode(path.read_bytes()).decode("ascii")}, "label": args.label}
    if path.suffix.lower() == ".npy":
        import numpy as np

        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise UsageError(f"{args.image} is not a readable .npy array: {e}") from None
        if array.ndim in (2, 3) and array.shape not in ((28, 28), (28, 28, 1)):
            if not 0 <= args.index < len(array):
                raise UsageError(f"--index {args.index} is outside the {len(array)} images of {args.image}")
            array = array[args.index]
        if not np.issubdtype(array.dtype, np.number):
            raise UsageError(f"{args.image} holds {array.dtype} values; expected pixel numbers")
        return {"image": array.reshape(-1).tolist(), "label": args.label}
    raise UsageError(f"{args.image}: use a 28x28 .png or a .npy array")


def _feedback(args: argparse.Namespace, settings: Settings) -> int:
    from mlpipe.feedback.store import FeedbackStore
    from mlpipe.registry import registry_for

    settings = registry_settings(args, settings)
    registry = registry_for(settings)
    store = FeedbackStore(settings)
    feedback = store.parse(_document(args), settings.model_name, registry.default_version)
    recorded = store.record(feedback)
    what = "recorded" if recorded.created else "already recorded (nothing added)"
    version = f"/{feedback.version}" if feedback.version else ""
    print(f"feedback {feedback.feedback_id} {what}: {feedback.source}, label {feedback.label}, "
          f"model {feedback.model}{version} → {store.table_id}")
    return 0


def _label(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 9:
        raise argparse.ArgumentTypeError(f"label must be a digit 0..9, not {text!r}")
    return int(text)


def register(sub, add_settings_flags) -> None:
    p = sub.add_parser(
        "feedback", help="record a user's label in BigQuery DATASET.feedback",
        description="Write a correction of a served prediction (--prediction-id, as returned in "
        "`predictionId` by the server) or a labelled example (--image) to BigQuery DATASET.feedback. "
        "Synchronous: it succeeds only once BigQuery accepted the row; sending the same feedback again "
        "adds nothing. The serving function takes the same JSON at POST .../models/M:feedback.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--prediction-id", help="the predictionId of a served instance")
    which.add_argument("--image", help="a 28x28 grey .png, or a .npy of raw 0-255 pixels")
    p.add_argument("--index", type=int, default=0, help="which image of a .npy batch (default 0)")
    p.add_argument("--label", type=_label, required=True, help="the true digit 0..9")
    add_registry_flags(p)
    add_settings_flags(p)
    p.set_defaults(handler=_feedback)
