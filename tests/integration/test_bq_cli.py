"""`mlpipe bq start / status / query / stop` against a real emulator on free ports, through the CLI."""

from __future__ import annotations

import re

import pytest

from mlpipe.bigquery import service
from mlpipe.cli import main
from tests.conftest import make_settings

pytestmark = pytest.mark.emulator


@pytest.fixture
def cli(tmp_path, capsys):
    settings = make_settings(tmp_path / "state")
    flags = ["--state-dir", str(settings.state_dir), "--bq-port", str(settings.bq_port),
             "--bq-grpc-port", str(settings.bq_grpc_port), "--dataset", "clitest"]

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, *flags])
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run, settings
    service.stop(settings)


def test_bq_start_status_query_stop(cli):
    run, settings = cli
    code, out, _ = run("bq", "status")
    assert code == 0 and re.search(r"^state +: stopped$", out, re.M)

    code, out, _ = run("bq", "start")
    assert code == 0 and f"REST http://127.0.0.1:{settings.bq_port}" in out
    assert service.is_healthy(settings)

    code, out, _ = run("load-data", "--limit", "7", "--splits", "test")
    assert code == 0 and "7 rows" in out
    code, out, _ = run("bq", "status")
    pid = service.status(settings).pid
    assert code == 0 and re.search(rf"^state +: running \(pid {pid}\)$", out, re.M)
    assert re.search(r"^  clitest\.test  \(7 rows\)$", out, re.M), out

    sql = "SELECT key, label FROM `local-project.clitest.test` ORDER BY key"
    code, out, _ = run("bq", "query", sql, "--max-rows", "3")
    from mlpipe.data.mnist_source import load_mnist

    labels = load_mnist()["test"].labels
    assert code == 0
    assert out.splitlines() == ["key\tlabel", *(f"{k}\t{labels[k]}" for k in range(3)), "... 4 more rows"]
    code, out, _ = run("bq", "query", "SELECT key FROM `local-project.clitest.test` WHERE key > 100")
    assert code == 0 and out == "(no rows)\n"
    code, _, err = run("bq", "query", "SELECT nope FROM `local-project.clitest.test`")
    assert code != 0 and err.startswith("error: ") and err.count("\n") == 1, err

    code, out, _ = run("bq", "stop")
    assert code == 0 and out == "stopped\n" and not service.is_healthy(settings)
    code, out, _ = run("bq", "stop")
    assert code == 0 and out == "not running\n"
