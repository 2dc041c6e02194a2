"""Small SavedModels with the serving contract (and one without), built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpipe.registry.signature_check import build_contract_model


@pytest.fixture(scope="session")
def fake_models(tmp_path_factory) -> tuple[Path, Path]:
    """Import into a conftest to use: `from tests.contract_models import fake_models`."""
    return contract_models(tmp_path_factory.getbasetemp() / "contract_models")


def contract_models(base: Path) -> tuple[Path, Path]:
    """Two contract models with different weights, so switching versions changes predictions."""
    models = (base / "model_a", base / "model_b")
    for seed, path in enumerate(models, start=1):
        if not (path / "saved_model.pb").exists():
            build_contract_model(path, seed=seed)
    return models


def wrong_signature_model(base: Path) -> Path:
    """A SavedModel whose input is called `pixels` instead of `image`."""
    path = base / "wrong_signature"
    if (path / "saved_model.pb").exists():
        return path
    import tensorflow as tf

    class Wrong(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32, name="pixels")])
        def serve(self, pixels):
            return {"logits": pixels[:, :10]}

    module = Wrong()
    signatures = {"serving_default": module.serve.get_concrete_function()}
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path
