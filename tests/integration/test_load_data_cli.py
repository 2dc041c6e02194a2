"""`mlpipe load-data` never replaces or shrinks loaded tables silently, and says when it creates a dataset."""

from __future__ import annotations

from mlpipe.bigquery.load import table_counts
from mlpipe.cli import main


def _load(settings, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["load-data", "--state-dir", str(settings.state_dir), "--dataset", settings.dataset,
                 "--bq-port", str(settings.bq_port), "--bq-grpc-port", str(settings.bq_grpc_port),
                 "--splits", "valid", "test", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_replacing_needs_replace_and_says_what_it_replaces(bq_settings, capsys):
    s = bq_settings.replace(dataset="load_cli")
    code, out, _ = _load(s, capsys, "--limit", "20")
    assert code == 0
    assert "created dataset local-project.load_cli" in out

    code, out, err = _load(s, capsys, "--limit", "10")  # would shrink 20 → 10 rows
    assert code != 0 and "Traceback" not in err
    assert "would replace local-project.load_cli.valid (20 rows), local-project.load_cli.test (20 rows)" in err
    assert "--replace" in err
    assert table_counts(s, ("valid", "test")) == {"valid": 20, "test": 20}  # untouched

    code, out, _ = _load(s, capsys, "--limit", "10", "--replace")
    assert code == 0
    assert "local-project.load_cli.valid: 10 rows" in out and "(replaced 20 rows)" in out
    assert "created dataset" not in out
    assert table_counts(s, ("valid", "test")) == {"valid": 10, "test": 10}

    code, out, _ = _load(s, capsys, "--limit", "10", "--if-needed")  # intact: nothing replaced, no flag needed
    assert code == 0 and "nothing to do" in out
