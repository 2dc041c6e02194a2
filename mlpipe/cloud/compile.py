"""Compile `create_pipeline(cfg)` for Vertex AI Pipelines with KubeflowV2DagRunner (offline).

The compiler only serializes the pipeline: nothing is uploaded. `run_fn` and `preprocessing_fn` are
referenced by module path (they are installed in the project's image), so TFX has no user module file
to package into a wheel and upload to the pipeline root.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.configs import PipelineConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompiledPipeline:
    path: Path
    size_bytes: int
    tasks: tuple[str, ...]  # DAG task ids, sorted
    pipeline_root: str


def compile_vertex(cfg: PipelineConfig, output: Path) -> CompiledPipeline:
    """Write the PipelineJob JSON for `cfg` (which must be a vertex config) to `output`."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kv2

    from pipeline.pipeline import create_pipeline

    if cfg.cloud is None:
        raise ValueError("compile_vertex needs a vertex config (PipelineConfig.on_vertex())")
    output = output.absolute()
    runner = kv2.KubeflowV2DagRunner(
        config=kv2.KubeflowV2DagRunnerConfig(display_name=cfg.pipeline_name, default_image=cfg.cloud.image),
        output_dir=str(output.parent),
        output_filename=output.name,
    )
    pipeline = create_pipeline(cfg)
    runner.run(pipeline)
    job = json.loads(output.read_text())
    tasks = tuple(sorted(job["pipelineSpec"]["root"]["dag"]["tasks"]))
    root = job["runtimeConfig"]["gcsOutputDirectory"]
    log.info("compiled %d tasks to %s (pipeline root %s)", len(tasks), output, root)
    return CompiledPipeline(output, output.stat().st_size, tasks, root)
