"""`mlpipe models … --registry-root URL` manages a bucket registry (file:// stands in for gs://)."""

from __future__ import annotations

import json

from mlpipe.cli import main


def test_models_commands_manage_a_url_registry(tmp_path, fake_models, capsys):
    root = (tmp_path / "bucket" / "registry").as_uri()
    flags = ["--registry-root", root]
    assert main(["models", "push", str(fake_models[0]), *flags]) == 0
    assert main(["models", "push", str(fake_models[1]), "--no-promote", *flags]) == 0
    assert main(["models", "set-default", "v2", *flags]) == 0
    capsys.readouterr()
    assert main(["models", "describe", "v2", *flags]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["default"] is True and doc["saved_model_dir"] == f"{root}/mnist/versions/v2/saved_model"
    assert main(["models", "delete", "v1", *flags]) == 0
    capsys.readouterr()
    assert main(["models", "list", *flags]) == 0
    out = capsys.readouterr().out
    assert "v2" in out and "v1" not in out
    state = json.loads((tmp_path / "bucket" / "registry" / "mnist" / "state.json").read_text())
    assert state["default"] == "v2"
