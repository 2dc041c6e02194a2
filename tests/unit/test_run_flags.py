"""`mlpipe run` refuses bad flags with one line on stderr before anything starts (no emulator, no
TensorFlow): the configuration is validated when it is built."""

from __future__ import annotations

import pytest

from mlpipe.cli import main
from pipeline.configs import PipelineConfig
from tests.conftest import make_settings


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--accuracy-floor", "1.5"], "error: accuracy floor must be within 0..1, not 1.5"),
        (["--accuracy-floor", "-0.1"], "error: accuracy floor must be within 0..1, not -0.1"),
        (["--regression-tolerance", "-0.01"], "error: regression tolerance must be >= 0"),
        (["--steps-per-iteration", "0"], "error: --steps-per-iteration and --iterations must be positive"),
        (["--iterations", "-2"], "error: --steps-per-iteration and --iterations must be positive"),
    ],
)
def test_bad_run_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    # Port 1: if validation did not stop the run first, it would fail on BigQuery with another message.
    code = main(["run", "--profile", "quick", "--state-dir", str(tmp_path), "--bq-port", "1", *flags])
    err = capsys.readouterr().err
    assert code == 2 and err == message + "\n", (code, err)
    assert not (tmp_path / "pipeline").exists() and not (tmp_path / "metadata").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["--profile", "huge"], "argument --profile: invalid choice: 'huge'"),
    (["--steps-per-iteration", "many"], "argument --steps-per-iteration: invalid int value: 'many'"),
])
def test_unparseable_run_flags_are_argparse_errors(tmp_path, capsys, argv, fragment):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--state-dir", str(tmp_path), *argv])
    assert exc.value.code == 2 and fragment in capsys.readouterr().err


def test_config_refuses_an_unknown_profile_and_cloud_settings_on_a_local_run(tmp_path):
    from mlpipe.errors import UsageError
    from pipeline.cloud_config import CloudConfig

    settings = make_settings(tmp_path)
    with pytest.raises(UsageError, match=r"unknown profile 'tiny'; choose from \['full', 'quick'\]"):
        PipelineConfig.for_profile(settings, "tiny")
    cloud = CloudConfig.__new__(CloudConfig)  # any value: only its presence is checked
    with pytest.raises(UsageError, match="a vertex pipeline needs cloud settings, and only a vertex pipeline"):
        PipelineConfig.for_profile(settings, "quick", cloud=cloud)
