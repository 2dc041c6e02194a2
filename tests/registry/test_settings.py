"""The registry and serving settings: env parsing, defaults, and the round trip `mlpipe serve` relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpipe.config import load_settings
from mlpipe.errors import UsageError
from mlpipe.serving.server import settings_environ


def test_registry_defaults_to_the_state_dir():
    s = load_settings(environ={"MLPIPE_STATE_DIR": "/tmp/state"})
    assert s.registry_location == "/tmp/state/registry"
    assert s.model_name == "mnist" and s.log_predictions is True


@pytest.mark.parametrize("text, value", [("0", False), ("false", False), ("No", False), ("off", False),
                                         ("1", True), ("TRUE", True), ("yes", True), ("on", True)])
def test_log_predictions_flag(text, value):
    assert load_settings(environ={"MLPIPE_LOG_PREDICTIONS": text}).log_predictions is value


def test_bad_boolean_is_a_usage_error():
    with pytest.raises(UsageError, match="log_predictions"):
        load_settings(environ={"MLPIPE_LOG_PREDICTIONS": "maybe"})


def test_registry_root_keeps_a_url_intact():
    s = load_settings(environ={"MLPIPE_REGISTRY_ROOT": "gs://bucket/registry"})
    assert s.registry_location == "gs://bucket/registry"


def test_serve_passes_every_setting_to_the_function(tmp_path):
    s = load_settings(environ={}, state_dir=tmp_path, project="p1", dataset="d1", bq_port=1234,
                      model_name="fashion", log_predictions=False)
    back = load_settings(environ=settings_environ(s))
    assert back.registry_location == str(tmp_path / "registry")
    assert back.replace(registry_root="") == s
    assert Path(back.state_dir).is_absolute()
