"""The function bundle in the real functions-framework server (`functions-framework --source
OUT/main.py --target predict_http`), answering ml v1 predictions from a registry it reads through
the URL-root code path that serves `gs://` (here a `file://` URL: same backend, no cloud account)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mlpipe.config import load_settings
from mlpipe.registry import open_registry
from tests.cloud.bundle_server import start_bundle_server, wait_ready

pytestmark = pytest.mark.e2e

PREDICT = "/v1/projects/my-proj/models/mnist:predict"


@pytest.fixture(scope="module")
def served_bundle(tmp_path_factory, request):
    base = tmp_path_factory.mktemp("fn-serving")
    registry_dir = base / "registry"
    root_url = registry_dir.as_uri()  # file:///…: read through tf.io.gfile, as gs:// is
    settings = load_settings(environ={}, project="my-proj", registry_root=root_url, log_predictions=False)
    server, bundle = start_bundle_server(base, settings)
    try:
        # Fill the registry while the server starts (both import TensorFlow).
        models = request.getfixturevalue("fake_models")
        open_registry(registry_dir, "mnist").push(models[0], {"test_accuracy": 0.9})
        wait_ready(server)
        yield server, bundle, registry_dir, models
    finally:
        server.stop()


def _expected(model_dir, batch: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf

    fn = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    return {k: v.numpy() for k, v in fn(image=tf.constant(batch, tf.float32)).items()}


def _batch(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(5, 784)).astype(np.float32)


def test_bundle_serves_ml_v1_predictions_from_the_registry(served_bundle):
    server, bundle, _, models = served_bundle
    batch = _batch(0)
    status, body, headers = server.request("POST", PREDICT, {"instances": batch.astype(int).tolist()},
                                           timeout=120)
    assert status == 200, (body, server.log()[-3000:])
    assert headers["X-Model-Version"] == "mnist/v1"
    expected = _expected(models[0], batch)
    predictions = body["predictions"]
    assert [p["class_ids"] for p in predictions] == expected["class_ids"].tolist()
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected["probabilities"],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([p["logits"] for p in predictions], expected["logits"], rtol=1e-5, atol=1e-5)
    # The bundled copy of the serving code answered, not the one installed in this venv.
    assert (bundle.path / "mlpipe" / "serving" / "__pycache__").is_dir()
    assert (bundle.path / "mlpipe" / "registry" / "__pycache__").is_dir()


def test_a_new_default_version_is_served_without_a_restart(served_bundle):
    server, _, registry_dir, models = served_bundle
    open_registry(registry_dir, "mnist").push(models[1], {"test_accuracy": 0.95})
    batch = _batch(1)
    deadline = time.monotonic() + 30  # Cloud Storage's stat cache holds for seconds; file:// has none
    while True:
        status, body, headers = server.request("POST", PREDICT, {"instances": batch.astype(int).tolist()},
                                               timeout=120)
        if headers.get("X-Model-Version") == "mnist/v2" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (status, headers["X-Model-Version"]) == (200, "mnist/v2")
    assert [p["class_ids"] for p in body["predictions"]] == _expected(models[1], batch)["class_ids"].tolist()


def test_registry_changes_through_the_function_are_refused(served_bundle):
    server = served_bundle[0]
    status, body, _ = server.request("POST", "/v1/projects/my-proj/models/mnist/versions/v1:setDefault", {})
    assert status == 400
    assert "read-only" in body["error"]
