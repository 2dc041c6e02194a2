"""A served registry: v1 (model A, default) and v2 (model B, alias `champion`) behind a real server.

The session server logs predictions to a BigQuery port where nothing listens, so every test also
shows that a dead BigQuery never fails a prediction.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlpipe.registry import Registry, registry_for
from tests.conftest import make_settings
from tests.contract_models import fake_models  # noqa: F401  (a fixture)
from tests.serving.server import start_server

MODEL_META = {"test_accuracy": 0.91, "pipeline_run_id": "run-a", "model_artifact_id": 7,
              "blessing_artifact_id": 8, "source_tables": ["local-project.mnist.train"]}


def populate(registry: Registry, models) -> None:
    registry.push(models[0], MODEL_META)
    registry.push(models[1], {"test_accuracy": 0.93}, promote=False)
    registry.set_alias("champion", "v2")


@pytest.fixture(scope="session")
def served(tmp_path_factory, request):
    state = tmp_path_factory.mktemp("serving-state")
    settings = make_settings(state, log_predictions=True)  # free ports: nothing listens there
    # Start the server first: its start-up overlaps with building the models in this process.
    server = start_server(settings, state)
    try:
        populate(registry_for(settings), request.getfixturevalue("fake_models"))
        # The first prediction imports TensorFlow and loads v1; do it once here, not inside a test.
        status, _, _ = server.request("POST", "/v1/projects/local-project/models/mnist:predict",
                                      {"instances": [[0] * 784]}, timeout=120)
        assert status == 200, server.log()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mnist_images() -> np.ndarray:
    from mlpipe.data.mnist_source import load_mnist

    return load_mnist()["test"].images[:300]


@pytest.fixture(scope="session")
def in_process(fake_models):  # noqa: F811
    """model name → callable(batch) → outputs, loaded in this process (for comparisons)."""
    import tensorflow as tf

    loaded = {name: tf.saved_model.load(str(path)) for name, path in zip(("v1", "v2"), fake_models,
                                                                         strict=True)}

    def run(version: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        fn = loaded[version].signatures["serving_default"]
        return {k: v.numpy() for k, v in fn(image=tf.constant(batch, tf.float32)).items()}

    return run
