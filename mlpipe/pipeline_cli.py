"""`mlpipe run`: the pipeline on the local runner, with a summary table at the end."""

from __future__ import annotations

import argparse


def add_pipeline_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="full", choices=["full", "quick"],
                   help="full: all rows, default training budget; quick: small slice, few steps")
    p.add_argument("--no-cache", dest="enable_cache", action="store_false", default=None,
                   help="re-run every component instead of reusing cached outputs")
    p.add_argument("--no-promote", dest="promote", action="store_false", default=None,
                   help="push a blessed model as a new version without making it the default")
    p.add_argument("--steps-per-iteration", type=int, help="AdaNet max_iteration_steps")
    p.add_argument("--iterations", type=int, help="AdaNet iterations")
    p.add_argument("--accuracy-floor", type=float, help="test accuracy needed for blessing (0..1)")
    p.add_argument("--regression-tolerance", type=float,
                   help="how much lower than the baseline's accuracy is still blessed (default 0)")


def pipeline_config_from(args: argparse.Namespace, settings):
    import dataclasses

    from pipeline.configs import PipelineConfig

    cfg = PipelineConfig.for_profile(
        settings,
        args.profile,
        enable_cache=args.enable_cache,
        accuracy_floor=args.accuracy_floor,
        regression_tolerance=args.regression_tolerance,
        promote=args.promote,
    )
    training = {}
    if args.steps_per_iteration is not None:
        training["max_iteration_steps"] = args.steps_per_iteration
    if args.iterations is not None:
        training["max_iterations"] = args.iterations
    if training:
        from mlpipe.errors import UsageError

        if any(v <= 0 for v in training.values()):
            raise UsageError("--steps-per-iteration and --iterations must be positive")
        search = cfg.training.search.replace(**training)
        cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, search=search))
    return cfg


def _run(args: argparse.Namespace, settings) -> int:
    from mlpipe.pipeline_run import run_local
    from mlpipe.run_summary import format_summary

    summary = run_local(pipeline_config_from(args, settings))
    print(format_summary(summary))
    return 0


def register(sub, add_settings_flags) -> None:
    p = sub.add_parser("run", help="run the TFX pipeline locally (LocalDagRunner)",
                       description="BigQuery → StatisticsGen → SchemaGen → ExampleValidator → "
                       "Transform → AdaNet Trainer → Evaluator (vs baseline) → Pusher.")
    add_pipeline_flags(p)
    add_settings_flags(p)
    p.set_defaults(handler=_run)
