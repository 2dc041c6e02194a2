"""One typed pipeline configuration; local vs cloud is a field, profiles are named presets.

Imports no TensorFlow: the CLI builds and validates a configuration before anything heavy loads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mlpipe.config import Settings
from mlpipe.errors import UsageError
from models.hparams import SearchSpace, TrainingConfig
from pipeline.cloud_config import CloudConfig

Orchestration = Literal["local", "vertex"]


@dataclass(frozen=True)
class Profile:
    """A named preset: how much data and how much training."""

    name: str
    training: TrainingConfig
    row_limits: dict[str, int] | None  # per ExampleGen split; None = whole tables
    accuracy_floor: float


PROFILES: dict[str, Profile] = {
    # All rows; the AdaNet DNN + CNN search with its measured default budget.
    "full": Profile("full", TrainingConfig(), None, accuracy_floor=0.97),
    # Small slice of real MNIST and a tiny search space: exercises every component in a few minutes.
    "quick": Profile(
        "quick",
        TrainingConfig(search=SearchSpace.quick().replace(max_iteration_steps=150), eval_steps=5),
        {"train": 3000, "eval": 500, "test": 1000},
        accuracy_floor=0.70,
    ),
}


@dataclass(frozen=True)
class PipelineConfig:
    settings: Settings
    profile: str = "full"
    orchestration: Orchestration = "local"
    training: TrainingConfig = field(default_factory=TrainingConfig)
    row_limits: dict[str, int] | None = None
    accuracy_floor: float = 0.97  # absolute test accuracy a model needs to be blessed
    regression_tolerance: float = 0.0  # how much worse than the baseline is still blessed
    enable_cache: bool = True
    # The DirectRunner's in-memory engine, named explicitly: Beam 2.74's DirectRunner first tries to
    # download the Prism runner binary from GitHub, which an offline machine cannot reach.
    beam_args: tuple[str, ...] = (
        "--runner=FnApiRunner",
        "--direct_running_mode=in_memory",
        "--direct_num_workers=1",
    )
    source_fingerprint: str = ""
    promote: bool = True  # a newly pushed version becomes the registry default
    # Push a blessed model as the challenger instead: it answers this share of the default's
    # requests (canary) or sees a copy of them (shadow); `mlpipe models promote` makes it the default.
    challenger_share: float | None = None
    # Learn from users' labels in DATASET.feedback: "auto" (locally: when the table has rows), "on",
    # "off". `feedback_rows` is what a run found: rows per split, None when feedback is not read.
    feedback: str = "auto"
    feedback_rows: dict[str, int] | None = None
    feedback_window: tuple[str, str] | None = None  # first and last feedback time read (UTC)
    # Continue the serving model's AdaNet search for one more iteration instead of searching anew.
    warm_start: bool = False
    challenger_mode: str = "canary"
    cloud: CloudConfig | None = None  # set exactly when orchestration == "vertex"

    def __post_init__(self) -> None:
        if (self.orchestration == "vertex") != (self.cloud is not None):
            raise UsageError("a vertex pipeline needs cloud settings, and only a vertex pipeline has them")
        if not 0.0 <= self.accuracy_floor <= 1.0:
            raise UsageError(f"accuracy floor must be within 0..1, not {self.accuracy_floor}")
        if self.regression_tolerance < 0:
            raise UsageError("regression tolerance must be >= 0")
        if self.feedback not in ("auto", "on", "off"):
            raise UsageError(f"feedback must be auto, on or off, not {self.feedback!r}")
        if self.challenger_share is not None:
            from mlpipe.registry import Rollout

            Rollout("", self.challenger_share, self.challenger_mode)  # validates share and mode

    @classmethod
    def for_profile(cls, settings: Settings, profile: str = "full", **overrides) -> PipelineConfig:
        if profile not in PROFILES:
            raise UsageError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
        p = PROFILES[profile]
        base = cls(
            settings=settings,
            profile=profile,
            training=p.training,
            row_limits=p.row_limits,
            accuracy_floor=p.accuracy_floor,
        )
        return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def reads_feedback(self) -> bool:
        return self.feedback_rows is not None

    @property
    def gates_on_feedback(self) -> bool:
        """Blessing also needs no regression on the feedback slice of the test split — when that
        slice has rows (TFMA fails a validation whose slice is missing)."""
        return bool(self.feedback_rows and self.feedback_rows.get("test", 0) > 0)

    def on_vertex(self) -> PipelineConfig:
        """The same pipeline for Vertex AI Pipelines: cloud settings validated, Beam on Dataflow."""
        cloud = CloudConfig.from_settings(self.settings)
        # Compiling is offline, so the feedback table cannot be looked at: "on" reads it (its slice is
        # reported, not gated: the compiled pipeline cannot know that its test share has rows).
        feedback_rows = {} if self.feedback == "on" else None
        return dataclasses.replace(self, orchestration="vertex", cloud=cloud, beam_args=cloud.beam_args(),
                                   feedback_rows=feedback_rows)

    @property
    def pipeline_name(self) -> str:
        return self.settings.pipeline_name

    @property
    def model_name(self) -> str:
        """The registry model the Pusher publishes to and the baseline is read from."""
        return self.settings.model_name

    @property
    def pipeline_root(self) -> Path:
        return self.settings.pipeline_root

    @property
    def metadata_path(self) -> Path:
        return self.settings.metadata_path
