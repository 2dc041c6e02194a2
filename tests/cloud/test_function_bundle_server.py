"""The function bundle in the real functions-framework server (`functions-framework --source
OUT/main.py --target predict_http`), answering ml v1 predictions from a registry it reads through
the URL-root code path that serves `gs://` (here a `file://` URL: same backend, no cloud account)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from mlpipe.cloud.function_bundle import write_bundle
from mlpipe.config import load_settings
from mlpipe.registry import open_registry
from mlpipe.serving.server import TARGET
from tests.conftest import free_port
from tests.serving.server import Server

pytestmark = pytest.mark.e2e

START_TIMEOUT_S = 120.0
PREDICT = "/v1/projects/my-proj/models/mnist:predict"


@pytest.fixture(scope="module")
def served_bundle(tmp_path_factory, request):
    base = tmp_path_factory.mktemp("fn-serving")
    registry_dir = base / "registry"
    root_url = registry_dir.as_uri()  # file:///…: read through tf.io.gfile, as gs:// is
    settings = load_settings(environ={}, project="my-proj", registry_root=root_url, log_predictions=False)
    bundle = write_bundle(base / "bundle", settings)
    # The deployed function's environment: exactly env.yaml (what --env-vars-file sets), no MLPIPE_*
    # of this process, and a working directory outside the repository.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(yaml.safe_load((bundle.path / "env.yaml").read_text()))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    port = free_port()
    framework = os.path.join(os.path.dirname(sys.executable), "functions-framework")
    cmd = [framework, "--source", str(bundle.path / "main.py"), "--target", TARGET,
           "--host", "127.0.0.1", "--port", str(port)]
    log_path = base / "server.log"
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=base, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    server = Server(f"http://127.0.0.1:{port}", port, proc, log_path, settings)
    try:
        # Fill the registry while the server starts (both import TensorFlow).
        models = request.getfixturevalue("fake_models")
        open_registry(registry_dir, "mnist").push(models[0], {"test_accuracy": 0.9})
        _wait_ready(server)
        yield server, bundle, registry_dir, models
    finally:
        server.stop()


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"function exited with {server.proc.returncode}:\n{server.log()[-3000:]}")
        try:
            status, _, _ = server.request("GET", "/v1/models/mnist", timeout=5)
        except OSError:
            status = None
        if status == 200:
            return
        time.sleep(0.3)
    raise RuntimeError(f"function did not answer within {START_TIMEOUT_S}s:\n{server.log()[-3000:]}")


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
