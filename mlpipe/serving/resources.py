"""Registry objects → the JSON resources AI Platform Prediction (ml v1) and TF Serving return.

ml v1 Model/Version fields follow Google's discovery document; our metadata travels in `labels`
(AI Platform label syntax: lowercase letters, digits, `_`, `-`, ≤ 63 chars) and `description`, and
in full, typed, under the extra field `mlpipeMetadata` (clients built from the discovery document
ignore unknown fields).
"""

from __future__ import annotations

import functools
import re
from importlib import metadata as importlib_metadata
from typing import Any

from mlpipe.contract import SERVING_SIGNATURE
from mlpipe.registry import VersionInfo

_LABEL_BAD = re.compile(r"[^a-z0-9_-]+")


@functools.lru_cache(maxsize=1)
def runtime_version() -> str:
    """The TensorFlow release serving the model, as AI Platform's `runtimeVersion` ("2.15")."""
    try:
        return ".".join(importlib_metadata.version("tensorflow").split(".")[:2])
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def model_name(project: str, model: str) -> str:
    return f"projects/{project}/models/{model}"


def version_resource(project: str, info: VersionInfo) -> dict[str, Any]:
    meta = info.metadata
    return {
        "name": f"{model_name(project, info.model)}/versions/{info.name}",
        "description": _description(info),
        "isDefault": info.is_default,
        "deploymentUri": info.saved_model_dir.as_uri() if info.is_local else info.saved_model_uri,
        "createTime": info.created_time,
        "state": "READY",
        "framework": "TENSORFLOW",
        "runtimeVersion": runtime_version(),
        "pythonVersion": "3.10",
        "labels": _labels(info),
        "mlpipeMetadata": {**meta.to_dict(), "aliases": list(info.aliases)},
    }


def model_resource(project: str, model: str, default: VersionInfo | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": model_name(project, model), "regions": ["local"]}
    if default is not None:
        out["defaultVersion"] = version_resource(project, default)
    return out


def delete_operation(project: str, info: VersionInfo) -> dict[str, Any]:
    """versions.delete answers with a long-running Operation; here it is already done."""
    return {
        "name": f"projects/{project}/operations/delete_{info.model}_{info.name}",
        "done": True,
        "metadata": {
            "@type": "type.googleapis.com/google.cloud.ml.v1.OperationMetadata",
            "operationType": "DELETE_VERSION",
            "modelName": model_name(project, info.model),
            "version": version_resource(project, info),
        },
        "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
    }


def tf_status(infos: list[VersionInfo]) -> dict[str, Any]:
    """TF Serving's GetModelStatus JSON: every registered version is loadable, i.e. AVAILABLE."""
    return {
        "model_version_status": [
            {
                "version": str(info.number if info.number is not None else info.name),
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
            for info in infos
        ]
    }


def tf_metadata(info: VersionInfo) -> dict[str, Any]:
    """TF Serving's GetModelMetadata JSON (`signature_def` as recorded when the version was pushed)."""
    return {
        "model_spec": {
            "name": info.model,
            "signature_name": "",
            "version": str(info.number if info.number is not None else info.name),
        },
        "metadata": {"signature_def": {"signature_def": dict(info.signatures)}},
    }


def _description(info: VersionInfo) -> str:
    meta = info.metadata
    parts = [meta.description] if meta.description else []
    if meta.test_accuracy is not None:
        parts.append(f"test accuracy {meta.test_accuracy:.4f}")
    if meta.baseline_accuracy is not None:
        parts.append(f"baseline accuracy {meta.baseline_accuracy:.4f}")
    if meta.source_tables:
        # The test split's table is only evaluated on, never trained on.
        tested = [t for t in meta.source_tables if f"`{t}`" in meta.source_queries.get("test", "")]
        trained = [t for t in meta.source_tables if t not in tested]
        parts.append("trained on " + ", ".join(trained) + ("; evaluated on " + ", ".join(tested) if tested else ""))
    if SERVING_SIGNATURE in info.signatures:
        parts.append(f"signature {SERVING_SIGNATURE}")
    return "; ".join(parts)


def _labels(info: VersionInfo) -> dict[str, str]:
    meta = info.metadata
    raw = {
        "pipeline_run_id": meta.pipeline_run_id,
        "model_artifact_id": meta.model_artifact_id,
        "blessing_artifact_id": meta.blessing_artifact_id,
        **{f"alias_{a.lower()}": "true" for a in info.aliases},
    }
    return {k[:63]: _label_value(v) for k, v in raw.items() if v not in (None, "")}


def _label_value(value: object) -> str:
    return _LABEL_BAD.sub("-", str(value).lower())[:63]

