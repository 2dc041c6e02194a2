"""Lineage reads the rows each split read back from the ExampleGen's content fingerprint."""

from __future__ import annotations

from mlpipe.bigquery.fingerprint import format_fingerprint
from mlpipe.lineage.report import _fingerprint_rows


def test_rows_read_per_split_from_the_content_fingerprint():
    parts = [f"train=local-project.mnist.train:{format_fingerprint(50000, 7, 9)}",
             f"eval=local-project.mnist.valid:{format_fingerprint(10000, 1, 2)}",
             f"test=local-project.mnist.test:{format_fingerprint(1000, 3, 4)}",
             f"feedback=local-project.mnist.feedback:{format_fingerprint(42, 5, 6)}"]
    assert _fingerprint_rows(";".join(parts)) == {
        "train": ("local-project.mnist.train", 50000), "eval": ("local-project.mnist.valid", 10000),
        "test": ("local-project.mnist.test", 1000), "feedback": ("local-project.mnist.feedback", 42)}
    assert _fingerprint_rows(None) == {} and _fingerprint_rows("garbage") == {}
