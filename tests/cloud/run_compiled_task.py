"""Run one task of a compiled PipelineJob the way its Vertex AI container does: the task's own
command and arguments (`python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor
--executor_class_path … --json_serialized_invocation_args {{$}} <beam args>`), with `{{$}}` replaced
by the ExecutorInput Vertex would pass — the task's compiled parameters, artifacts typed as the
compiled component declares them, output URIs — on local paths instead of gs://."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlpipe.config import REPO_ROOT


def executor_input(job: dict, task_id: str, inputs: dict[str, list[dict[str, Any]]], out_dir: Path,
                   parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """`inputs`: key → [{"uri": …, "name": …, "custom_properties": {k: int|str}}]."""
    spec = job["pipelineSpec"]
    task = spec["root"]["dag"]["tasks"][task_id]
    component = spec["components"][task["componentRef"]["name"]]
    params = {k: v["runtimeValue"]["constantValue"] for k, v in task["inputs"].get("parameters", {}).items()
              if "runtimeValue" in v}
    params.update({k: {"stringValue": v} for k, v in (parameters or {}).items()})
    in_defs = component.get("inputDefinitions", {}).get("artifacts", {})
    out_defs = component.get("outputDefinitions", {}).get("artifacts", {})

    def runtime_artifact(kind: dict, a: dict[str, Any]) -> dict[str, Any]:
        custom = {k: ({"intValue": v} if isinstance(v, int) else {"stringValue": v})
                  for k, v in a.get("custom_properties", {}).items()}
        return {"name": a["name"], "type": kind["artifactType"], "uri": a["uri"], "customProperties": custom}

    return {
        "inputs": {
            "parameters": params,
            "artifacts": {k: {"artifacts": [runtime_artifact(in_defs[k], a) for a in arts]}
                          for k, arts in inputs.items()},
        },
        "outputs": {
            "artifacts": {k: {"artifacts": [runtime_artifact(d, {
                "name": f"projects/offline/locations/local/metadataStores/default/artifacts/{task_id}-{k}",
                "uri": str(out_dir / task_id / k)})]} for k, d in out_defs.items()},
            "outputFile": str(out_dir / task_id / "executor_output.json"),
        },
    }


def run_task(job: dict, task_id: str, invocation: dict[str, Any], env: dict[str, str] | None = None) -> dict:
    """Run the task's container command here; returns its ExecutorOutput (what Vertex records)."""
    spec = job["pipelineSpec"]
    label = spec["components"][spec["root"]["dag"]["tasks"][task_id]["componentRef"]["name"]]["executorLabel"]
    container = spec["deploymentSpec"]["executors"][label]["container"]
    assert container["command"][0] == "python"
    argv = [sys.executable, *container["command"][1:],
            *[json.dumps(invocation) if a == "{{$}}" else a for a in container["args"]]]
    proc = subprocess.run(argv, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(Path(invocation["outputs"]["outputFile"]).read_text())
