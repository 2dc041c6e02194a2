"""Registry of subcommands that live beside the modules they drive.

Each entry is `register(subparsers, add_settings_flags)`; keeping the list here lets each feature own
its CLI code without `cli.py` importing heavy libraries (TensorFlow, TFX) at start-up.
"""

from __future__ import annotations

from collections.abc import Callable

from mlpipe import pipeline_cli, serving_check
from mlpipe.cloud import cli as cloud_cli
from mlpipe.lineage import cli as lineage_cli
from mlpipe.registry import cli as registry_cli
from mlpipe.serving import cli as serving_cli

REGISTRARS: list[Callable] = [
    pipeline_cli.register,
    registry_cli.register,
    serving_cli.register,
    serving_check.register,
    cloud_cli.register,
    lineage_cli.register,
]
