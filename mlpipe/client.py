"""Python client for the serving function: batched predictions with a progress bar, model metadata.

    client = PredictionClient("http://127.0.0.1:8080", project="local-project", model="mnist")
    result = client.predict(images)            # images: [n, 784] | [n, 28, 28] raw 0-255 pixels
    result.class_ids, result.confidence, result.version

All batches of one `predict` call go to the same version: the default (or the alias) is resolved
once up front, so a `set-default` in the middle of a long run cannot mix two models' answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpipe.errors import NotFoundError, PredictionRequestError, ServiceUnavailable, UsageError

DEFAULT_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Predictions:
    class_ids: np.ndarray  # int64 [n]
    probabilities: np.ndarray  # float32 [n, 10]
    logits: np.ndarray  # float32 [n, 10]
    version: str

    @property
    def confidence(self) -> np.ndarray:
        """Probability of the predicted class, [n]."""
        return self.probabilities.max(axis=1) if len(self.probabilities) else np.zeros(0, np.float32)

    def __len__(self) -> int:
        return len(self.class_ids)


class PredictionClient:
    def __init__(self, base_url: str = DEFAULT_URL, project: str = "local-project", model: str = "mnist",
                 timeout: float = 60.0, token: str | None = None) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.project = project
        self.model = model
        self.timeout = timeout
        self._session = requests.Session()  # keep-alive across batches
        if token:  # a server beyond loopback wants it for predictions (`mlpipe serve --token`)
            self._session.headers["Authorization"] = f"Bearer {token}"

    # ---- public API -----------------------------------------------------------------------------

    def predict(
        self,
        images: np.ndarray | Sequence[Any],
        batch_size: int = 100,
        version: str | None = None,
        alias: str | None = None,
        progress: bool = True,
    ) -> Predictions:
        """Predict `images` (a pixel array, or a list of instances as the server accepts them)."""
        from tqdm import tqdm

        if batch_size < 1:
            raise UsageError("batch_size must be at least 1")
        instances = to_instances(images)
        pinned = self._pin_version(version, alias)
        path = f"{self._model_path}/versions/{pinned}:predict"
        rows: list[dict[str, Any]] = []
        with tqdm(total=len(instances), unit="img", desc=f"predict {self.model}/{pinned}",
                  disable=not progress, leave=False) as bar:
            for start in range(0, len(instances), batch_size):
                chunk = instances[start : start + batch_size]
                rows.extend(self._call("POST", path, {"instances": chunk})["predictions"])
                bar.update(len(chunk))
        return Predictions(
            class_ids=np.array([r["class_ids"][0] for r in rows], dtype=np.int64),
            probabilities=np.array([r["probabilities"] for r in rows], dtype=np.float32).reshape(-1, 10),
            logits=np.array([r["logits"] for r in rows], dtype=np.float32).reshape(-1, 10),
            version=pinned,
        )

    def get_model_meta(self, version: str | None = None) -> dict[str, Any]:
        """The AI Platform Version resource of `version` (default: the default version)."""
        if version is not None:
            return self._call("GET", f"{self._model_path}/versions/{version}")
        model = self._call("GET", self._model_path)
        if "defaultVersion" not in model:
            raise NotFoundError(f"model {self.model!r} has no default version")
        return model["defaultVersion"]

    def list_versions(self) -> list[dict[str, Any]]:
        out, token = [], ""
        while True:
            page = self._call("GET", f"{self._model_path}/versions", params={"pageToken": token} if token
                              else None)
            out.extend(page.get("versions", []))
            token = page.get("nextPageToken", "")
            if not token:
                return out

    # ---- internals ------------------------------------------------------------------------------

    @property
    def _model_path(self) -> str:
        return f"/v1/projects/{self.project}/models/{self.model}"

    def _pin_version(self, version: str | None, alias: str | None) -> str:
        if version is not None and alias is not None:
            raise UsageError("give a version or an alias, not both")
        if version is not None:
            return version
        if alias is not None:
            status = self._call("GET", f"/v1/models/{self.model}/labels/{alias}")
            return f"v{status['model_version_status'][0]['version']}"
        return self.get_model_meta()["name"].rsplit("/", 1)[-1]

    def _call(self, method: str, path: str, body: Any = None, params: dict | None = None) -> dict[str, Any]:
        import requests

        url = self.base_url + path
        try:
            resp = self._session.request(method, url, json=body, params=params, timeout=self.timeout)
        except requests.ConnectionError:
            raise ServiceUnavailable(
                f"no prediction server answers at {self.base_url}; start one with `mlpipe serve`"
            ) from None
        except requests.Timeout:
            raise ServiceUnavailable(f"{method} {url} timed out after {self.timeout:g}s") from None
        try:
            doc = resp.json()
        except ValueError:
            doc = {"error": resp.text[:200] or resp.reason}
        if resp.status_code < 400:
            return doc
        message = doc.get("error", resp.reason) if isinstance(doc, dict) else resp.reason
        if resp.status_code == 404:
            raise NotFoundError(message)
        if resp.status_code >= 500:
            raise ServiceUnavailable(f"server error {resp.status_code}: {message}")
        raise PredictionRequestError(message)


def to_instances(images: np.ndarray | Sequence[Any]) -> list[Any]:
    """Pixel arrays → `{"image": [...]}` instances; lists of instances pass through unchanged."""
    if isinstance(images, np.ndarray):
        if images.ndim == 1 or images.shape in ((28, 28), (28, 28, 1)):
            images = images[None]
        if images.size == 0:
            return []
        flat = images.reshape(len(images), -1)
        if flat.shape[1] != 784:
            raise UsageError(f"images must be [n, 784], [n, 28, 28] or [n, 28, 28, 1]; got {images.shape}")
        if np.issubdtype(flat.dtype, np.integer):
            return [{"image": row} for row in flat.astype(np.int64).tolist()]
        return [{"image": row} for row in flat.astype(np.float64).tolist()]
    return list(images)
