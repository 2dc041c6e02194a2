from pathlib import Path

import pytest

from mlpipe.config import Settings, load_settings
from mlpipe.errors import UsageError


def test_defaults_then_env_then_flags():
    s = load_settings(environ={})
    assert s == Settings()
    s = load_settings(environ={"MLPIPE_BQ_PORT": "9999", "MLPIPE_STATE_DIR": "/tmp/x"})
    assert s.bq_port == 9999 and s.state_dir == Path("/tmp/x")
    s = load_settings(environ={"MLPIPE_BQ_PORT": "9999"}, bq_port=1234, project=None)
    assert s.bq_port == 1234 and s.project == "local-project"


def test_endpoint_depends_on_target():
    assert Settings().bq_endpoint == "http://127.0.0.1:9050"
    assert Settings(bq_target="cloud").bq_endpoint is None
    assert Settings().table_id("train") == "local-project.mnist.train"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MLPIPE_BQ_PORT": "abc"}, "bq_port expects a number, got 'abc'"),
        ({"MLPIPE_BQ_PORT": "70000"}, r"bq_port must be a TCP port \(1-65535\), not 70000"),
        ({"MLPIPE_BQ_TARGET": "moon"}, "bq_target must be 'local' or 'cloud', not 'moon'"),
    ],
)
def test_bad_values_are_usage_errors(env, message):
    with pytest.raises(UsageError, match=message):
        load_settings(environ=env)
