"""The AutoML search space and the training budget: plain dataclasses, no TensorFlow.

`pipeline/configs.py` builds its profiles from these, and the Trainer's `custom_config` carries them
as JSON, so the pipeline configuration and every CLI that reads it import in milliseconds; only the
Trainer (models/generators.py, models/model.py) turns them into graphs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

FAMILIES = ("dnn", "cnn")
ENSEMBLE_STRATEGIES = ("grow", "all", "solo")
ENSEMBLERS = ("uniform", "learned", "mean")
LR_SCHEDULES = ("constant", "cosine", "exponential")
SELECTION_METRICS = ("adanet_loss", "accuracy", "average_loss")


@dataclass(frozen=True)
class SearchSpace:
    """Everything the search may vary, with the best measured full-profile configuration as defaults.

    The defaults come from the runs in BENCHMARKS.md ("AutoML", configurations tried): ≈99.5 % on
    the standard test set in 2 × 4,000 steps, ≈6 min of training on 2 uncontended cores.
    """

    families: tuple[str, ...] = FAMILIES
    # Optimisation, shared by every family (Adam; the schedule restarts at each iteration because
    # each iteration trains fresh subnetworks).
    learning_rate: float = 2e-3
    lr_schedule: str = "cosine"
    lr_decay_rate: float = 0.1  # "exponential": factor reached at the end of an iteration
    label_smoothing: float = 0.1
    # DNN family (the seed's simple DNN).
    dnn_layer_size: int = 256
    dnn_initial_layers: int = 1
    dnn_dropout: float = 0.2
    # CNN family: block i has `cnn_filters[i]` filters; a candidate has n or n+1 blocks.
    cnn_filters: tuple[int, ...] = (32, 64, 128)
    cnn_initial_blocks: int = 2
    cnn_convs_per_block: int = 1
    cnn_dense_units: int = 128
    cnn_dropout: float = 0.3
    cnn_batch_norm: bool = False
    cnn_depth_offsets: tuple[int, ...] = (0, 1)
    augment_shift: int = 2  # max random translation in pixels, train mode only; 0 disables
    # Ensembling.
    ensemble: str = "grow"  # "+"-joined subset of ENSEMBLE_STRATEGIES, e.g. "grow+solo"
    ensemblers: tuple[str, ...] = ("uniform",)
    adanet_lambda: float = 0.0
    adanet_beta: float = 0.0
    adanet_loss_decay: float = 0.9
    selection_metric: str = "adanet_loss"
    # Budget.
    max_iteration_steps: int = 4000
    max_iterations: int = 2
    batch_size: int = 64
    eval_batch_size: int = 500
    seed: int = 42

    def __post_init__(self) -> None:
        unknown = set(self.families) - set(FAMILIES)
        if not self.families or unknown:
            raise ValueError(f"families must be a non-empty subset of {FAMILIES}, got {self.families}")
        for strategy in self.ensemble.split("+"):
            if strategy not in ENSEMBLE_STRATEGIES:
                raise ValueError(f"unknown ensemble strategy {strategy!r}; choose from {ENSEMBLE_STRATEGIES}")
        for ensembler in self.ensemblers:
            if ensembler not in ENSEMBLERS:
                raise ValueError(f"unknown ensembler {ensembler!r}; choose from {ENSEMBLERS}")
        if not self.ensemblers:
            raise ValueError("ensemblers must not be empty")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}")
        if self.selection_metric not in SELECTION_METRICS:
            raise ValueError(f"selection_metric must be one of {SELECTION_METRICS}")
        if self.cnn_initial_blocks < 1 or not self.cnn_filters:
            raise ValueError("the CNN family needs at least one block and one filter size")
        if not self.cnn_depth_offsets or min(self.cnn_depth_offsets) < 0:
            raise ValueError("cnn_depth_offsets must be non-negative and non-empty")
        if self.max_iteration_steps <= 0 or self.max_iterations <= 0 or self.batch_size <= 0:
            raise ValueError("steps, iterations and batch size must be positive")

    @classmethod
    def quick(cls) -> SearchSpace:
        """A tiny space for tests: small nets, a few steps, seconds of training."""
        return cls(
            dnn_layer_size=32,
            cnn_filters=(8, 16),
            cnn_initial_blocks=1,
            cnn_convs_per_block=1,
            cnn_dense_units=32,
            max_iteration_steps=30,
            max_iterations=2,
            batch_size=32,
            eval_batch_size=100,
        )

    @property
    def total_steps(self) -> int:
        """The `max_steps` to pass to `estimator.train`."""
        return self.max_iteration_steps * self.max_iterations

    def replace(self, **changes: Any) -> SearchSpace:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainingConfig:
    """What the Trainer's `custom_config["training"]` carries: the AdaNet search space and budget."""

    search: SearchSpace = field(default_factory=SearchSpace)
    eval_steps: int = 20  # batches of the eval split per candidate evaluation (20 × 500 = 10k rows)

    @classmethod
    def from_custom_config(cls, custom_config: dict[str, Any] | None) -> TrainingConfig:
        given = dict((custom_config or {}).get("training", {}))
        search = dict(given.pop("search", {}))
        unknown = set(given) - {"eval_steps"}
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        fields = {f.name: f for f in dataclasses.fields(SearchSpace)}
        unknown = set(search) - set(fields)
        if unknown:
            raise ValueError(f"unknown search settings: {sorted(unknown)}")
        # JSON turns the space's tuples into lists; the frozen dataclass wants them back.
        search = {k: tuple(v) if isinstance(v, list) else v for k, v in search.items()}
        return cls(search=SearchSpace(**search), **given)

    def to_custom_config(self) -> dict[str, Any]:
        return {"search": self.search.to_dict(), "eval_steps": self.eval_steps}

    @property
    def train_steps(self) -> int:
        return self.search.total_steps
