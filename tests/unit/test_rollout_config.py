"""`mlpipe run --as-challenger SHARE [--shadow]`: the pusher is told to push a challenger."""

from __future__ import annotations

import argparse
import json

import pytest

from mlpipe.config import load_settings
from mlpipe.errors import UsageError


def _config(tmp_path, *flags: str):
    from pipeline.cli import add_pipeline_flags, pipeline_config_from

    parser = argparse.ArgumentParser()
    add_pipeline_flags(parser)
    return pipeline_config_from(parser.parse_args(["--profile", "quick", *flags]),
                                load_settings(environ={}, state_dir=tmp_path))


def _pusher_config(cfg) -> dict:
    from pipeline.pipeline import create_pipeline

    pusher = next(c for c in create_pipeline(cfg).components if c.id == "Pusher")
    return json.loads(pusher.exec_properties["custom_config"])


def test_as_challenger_reaches_the_registry_pusher(tmp_path):
    assert _pusher_config(_config(tmp_path))["challenger"] is None
    cfg = _config(tmp_path, "--as-challenger", "0.2")
    assert (cfg.challenger_share, cfg.challenger_mode) == (0.2, "canary")
    assert _pusher_config(cfg)["challenger"] == {"share": 0.2, "mode": "canary"}
    cfg = _config(tmp_path, "--as-challenger", "1", "--shadow")
    assert _pusher_config(cfg)["challenger"] == {"share": 1.0, "mode": "shadow"}


@pytest.mark.parametrize(("flags", "message"), [
    (("--shadow",), "--shadow needs --as-challenger"),
    (("--as-challenger", "1.5"), "between 0 and 1"),
    (("--as-challenger", "nan"), "between 0 and 1"),
])
def test_bad_rollout_flags_are_one_line_errors(tmp_path, flags, message):
    with pytest.raises(UsageError, match=message):
        _config(tmp_path, *flags)
