"""Run the tasks of a compiled PipelineJob the way their Vertex AI containers do: each task's own
command and arguments (`python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor
--executor_class_path … --json_serialized_invocation_args {{$}} <beam args>`), with `{{$}}` replaced
by the ExecutorInput Vertex would pass — the task's compiled parameters (constants, and the pipeline's
run-time parameters as `runtimeConfig` would give them), input artifacts typed and named as Vertex
records them (with the metadata the producer's ExecutorOutput reported: split names, blessing, …),
output URIs — on local paths instead of gs://.

Neither TFX nor KFP ships a local runner for a compiled PipelineJob at these versions: TFX's
`kubeflow_v2_run_executor` is the per-task entry point (used here as is), and KFP's `kfp.local`
(kfp ≥ 2.5) runs pipelines defined with the KFP SDK, container components only in Docker, and needs a
kfp-pipeline-spec newer than the 0.1.16 TFX 1.15 pins. So `run_pipeline` below does what the Vertex
AI Pipelines service does between the containers: topological order, artifact URIs and names, the
ExecutorInput of each task and the hand-over of each ExecutorOutput to the consumers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpipe.config import REPO_ROOT

# What Vertex names an artifact (a Vertex ML Metadata resource); TFX hashes it to the int64 MLMD id.
ARTIFACT_STORE = "projects/offline/locations/local/metadataStores/default/artifacts"


def _task(job: dict, task_id: str) -> dict:
    return job["pipelineSpec"]["root"]["dag"]["tasks"][task_id]


def _component(job: dict, task_id: str) -> dict:
    return job["pipelineSpec"]["components"][_task(job, task_id)["componentRef"]["name"]]


def task_parameters(job: dict, task_id: str, runtime_parameters: Mapping[str, str] | None = None) -> dict:
    """The task's parameters as Vertex resolves them: compiled constants, and run-time parameters of
    the pipeline (`componentInputParameter`) from the job's runtimeConfig (what `submit` sets)."""
    params = {}
    for name, value in _task(job, task_id)["inputs"].get("parameters", {}).items():
        if "runtimeValue" in value:
            params[name] = value["runtimeValue"]["constantValue"]
        elif "componentInputParameter" in value:
            key = value["componentInputParameter"]
            if runtime_parameters is None or key not in runtime_parameters:
                raise KeyError(f"task {task_id} needs the pipeline parameter {key!r}: submit must set it")
            params[name] = {"stringValue": runtime_parameters[key]}
        else:
            raise NotImplementedError(f"task {task_id} parameter {name}: {value}")
    return params


def executor_input(job: dict, task_id: str, inputs: dict[str, list[dict[str, Any]]], out_dir: Path,
                   parameters: dict[str, str] | None = None,
                   runtime_parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`inputs`: key → [{"uri": …, "name": …, "custom_properties": {k: int|str}, "metadata": {…},
    "type": artifactType}] (type defaults to the consumer's declared input type). `parameters`
    replace compiled values (string-typed)."""
    component = _component(job, task_id)
    params = task_parameters(job, task_id, runtime_parameters)
    params.update({k: {"stringValue": v} for k, v in (parameters or {}).items()})
    in_defs = component.get("inputDefinitions", {}).get("artifacts", {})
    out_defs = component.get("outputDefinitions", {}).get("artifacts", {})

    def runtime_artifact(kind: dict, a: dict[str, Any]) -> dict[str, Any]:
        custom = {k: ({"intValue": v} if isinstance(v, int) else {"stringValue": v})
                  for k, v in a.get("custom_properties", {}).items()}
        artifact = {"name": a["name"], "type": a.get("type", kind["artifactType"]), "uri": a["uri"],
                    "customProperties": custom}
        if "metadata" in a:
            artifact["metadata"] = a["metadata"]
        return artifact

    return {
        "inputs": {
            "parameters": params,
            "artifacts": {k: {"artifacts": [runtime_artifact(in_defs[k], a) for a in arts]}
                          for k, arts in inputs.items()},
        },
        "outputs": {
            "artifacts": {k: {"artifacts": [runtime_artifact(d, {
                "name": f"{ARTIFACT_STORE}/{task_id}-{k}",
                "uri": str(out_dir / task_id / k)})]} for k, d in out_defs.items()},
            "outputFile": str(out_dir / task_id / "executor_output.json"),
        },
    }


def container(job: dict, task_id: str) -> dict:
    spec = job["pipelineSpec"]
    return spec["deploymentSpec"]["executors"][_component(job, task_id)["executorLabel"]]["container"]


def run_task(job: dict, task_id: str, invocation: dict[str, Any], env: dict[str, str] | None = None,
             executor_class: str | None = None, beam_args: list[str] | None = None) -> dict:
    """Run the task's container command here; returns its ExecutorOutput (what Vertex records).
    `executor_class` / `beam_args` replace the compiled ones (the rest of the command is kept)."""
    spec = container(job, task_id)
    assert spec["command"][0] == "python"
    args = list(spec["args"])
    assert args[0] == "--executor_class_path" and args[2:4] == ["--json_serialized_invocation_args", "{{$}}"]
    if executor_class is not None:
        args[1] = executor_class
    if beam_args is not None:
        args[4:] = beam_args
    argv = [sys.executable, *spec["command"][1:], *[json.dumps(invocation) if a == "{{$}}" else a for a in args]]
    proc = subprocess.run(argv, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"{task_id} failed:\n{proc.stderr[-6000:]}"
    return json.loads(Path(invocation["outputs"]["outputFile"]).read_text())


def dependencies(job: dict) -> dict[str, set[str]]:
    """task → the tasks it waits for (by `dependentTasks` or by an input artifact)."""
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    return {t: set(task.get("dependentTasks", [])) | {
        a["taskOutputArtifact"]["producerTask"] for a in task["inputs"].get("artifacts", {}).values()
        if "taskOutputArtifact" in a} for t, task in tasks.items()}


def topological_order(job: dict) -> list[str]:
    """The DAG's tasks, each after every task it depends on; ties in name order."""
    needs = dependencies(job)
    order: list[str] = []
    while len(order) < len(needs):
        ready = sorted(t for t in needs if t not in order and needs[t] <= set(order))
        if not ready:
            raise ValueError(f"cycle among {sorted(set(needs) - set(order))}")
        order.append(ready[0])
    return order


@dataclass
class PipelineRun:
    """What a Vertex pipeline run records: per task, the ExecutorInput it got, its ExecutorOutput and
    when it started and ended (monotonic seconds)."""

    root: Path
    invocations: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)

    def artifact(self, task_id: str, key: str) -> dict:
        """The output artifact as the consumers get it: Vertex's name, the URI, reported metadata."""
        given = self.invocations[task_id]["outputs"]["artifacts"][key]["artifacts"][0]
        reported = self.outputs[task_id].get("artifacts", {}).get(key, {}).get("artifacts", [{}])[0]
        assert reported.get("uri", given["uri"]) == given["uri"], (task_id, key)
        return {"name": given["name"], "type": given["type"], "uri": given["uri"],
                "metadata": reported.get("metadata", {})}


def wired_inputs(job: dict, task_id: str, run: PipelineRun) -> dict[str, list[dict[str, Any]]]:
    """The task's input artifacts from its producers' outputs, as Vertex hands them over."""
    inputs = {}
    for key, ref in _task(job, task_id)["inputs"].get("artifacts", {}).items():
        producer = ref["taskOutputArtifact"]
        inputs[key] = [run.artifact(producer["producerTask"], producer["outputArtifactKey"])]
    return inputs


def run_pipeline(job: dict, root: Path, runtime_parameters: Mapping[str, str], *, beam_args: list[str],
                 overrides: Mapping[str, Mapping[str, Any]] | None = None, skip: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, parallel: int = 2) -> PipelineRun:
    """Every task of `job`, each through its container command as soon as the tasks it depends on have
    finished (up to `parallel` at once, as Vertex runs independent tasks side by side), outputs under
    `root/<task>/<key>`. `overrides[task]` may set `executor_class` and extra `parameters` (str or
    int values) for one task; `skip` names tasks that are not run (nothing may depend on them)."""
    needs = dependencies(job)
    pending = [t for t in topological_order(job) if t not in skip]
    assert not any(needs[t] & set(skip) for t in pending), "a skipped task has consumers"
    run = PipelineRun(root)

    def start(task_id: str) -> dict:
        override = (overrides or {}).get(task_id, {})
        invocation = executor_input(job, task_id, wired_inputs(job, task_id, run), root,
                                    runtime_parameters=runtime_parameters)
        for name, value in override.get("parameters", {}).items():
            invocation["inputs"]["parameters"][name] = (
                {"intValue": str(value)} if isinstance(value, int) else {"stringValue": value})
        run.invocations[task_id] = invocation
        run.started[task_id] = time.monotonic()
        return run_task(job, task_id, invocation, env=env, executor_class=override.get("executor_class"),
                        beam_args=beam_args)

    with ThreadPoolExecutor(parallel) as pool:
        running: dict[Future, str] = {}
        while pending or running:
            for task_id in [t for t in pending if needs[t] <= set(run.outputs)][:parallel - len(running)]:
                pending.remove(task_id)
                running[pool.submit(start, task_id)] = task_id
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                task_id = running.pop(future)
                run.outputs[task_id] = future.result()  # a failed task fails the run (Vertex: same)
                run.ended[task_id] = time.monotonic()
    return run
