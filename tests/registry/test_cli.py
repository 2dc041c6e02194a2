"""`mlpipe models …` through the real CLI entry point: output lines and one-line errors."""

from __future__ import annotations

import json

import pytest

from mlpipe.cli import main


@pytest.fixture
def run(tmp_path, capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--state-dir", str(tmp_path / "state")])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_models_workflow(run, fake_models, tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"test_accuracy": 0.99, "pipeline_run_id": "r1"}))
    assert run("models", "list")[1].count("no versions") == 1
    code, out, _ = run("models", "push", str(fake_models[0]), "--metadata", str(meta))
    assert (code, out) == (0, "pushed mnist/v1 (default)\n")
    code, out, _ = run("models", "push", str(fake_models[1]), "--no-promote", "--description", "b")
    assert (code, out) == (0, "pushed mnist/v2 (not default)\n")
    assert run("models", "alias", "champion", "v2")[1] == "mnist: alias champion → v2\n"
    code, out, _ = run("models", "list")
    lines = out.splitlines()
    assert lines[1].split() == ["VERSION", "DEFAULT", "ALIASES", "CREATED", "(UTC)", "TEST", "ACC",
                                "BASELINE", "RUN"]
    assert lines[2].split()[:3] == ["v1", "*", "-"] and "99.00%" in lines[2] and lines[2].endswith("r1")
    assert lines[3].split()[:2] == ["v2", "champion"]
    doc = json.loads(run("models", "describe", "v2")[1])
    assert doc["version"] == "v2" and doc["aliases"] == ["champion"] and doc["metadata"]["description"] == "b"
    assert doc["signature"]["inputs"]["image"]["dtype"] == "DT_FLOAT"
    assert json.loads(run("models", "describe")[1])["version"] == "v1"
    assert run("models", "set-default", "v2")[1] == "mnist: default version is now v2\n"
    code, _, err = run("models", "delete", "v2")
    assert code == 1 and err.startswith("error: v2 is the default version") and err.count("\n") == 1
    code, _, err = run("models", "delete", "v1")
    assert code == 0
    assert run("models", "alias", "champion", "--remove")[1] == "mnist: removed alias champion (was v2)\n"


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["models", "describe", "v9"], 1, "error: model 'mnist' not found"),
        (["models", "set-default", "../v1"], 2, "error: invalid version name '../v1'"),
        (["models", "alias", "bad-name", "v1"], 2, "error: invalid alias name 'bad-name'"),
        (["models", "alias", "champion"], 2, "error: give the VERSION"),
        (["models", "list", "--model", "%2e%2e"], 2, "error: invalid model name '%2e%2e'"),
        (["models", "push", "/nonexistent/model"], 1, "error: SavedModel directory /nonexistent/model"),
    ],
)
def test_user_errors_are_one_line(run, argv, code, message):
    got_code, out, err = run(*argv)
    assert got_code == code and out == ""
    assert err.startswith(message) and err.count("\n") == 1


@pytest.mark.parametrize("action", ["list", "describe", "push", "set-default", "alias", "delete"])
def test_help(action, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["models", action, "--help"])
    assert exc.value.code == 0
    assert "--registry-root" in capsys.readouterr().out
