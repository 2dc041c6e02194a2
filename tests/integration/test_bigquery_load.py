"""Loads real MNIST into the real emulator over its REST API and reads it back."""

import numpy as np
import pytest

from mlpipe.bigquery.client import query_rows
from mlpipe.bigquery.load import load_mnist_tables, table_counts, tables_intact
from mlpipe.bigquery.read import read_table_numpy
from mlpipe.data.mnist_source import load_mnist
from mlpipe.errors import NotFoundError, UsageError


def test_full_load_is_lossless_for_sampled_rows_of_every_table(mnist_full):
    source = load_mnist()
    assert table_counts(mnist_full) == {"train": 50000, "valid": 10000, "test": 10000}
    rng = np.random.default_rng(0)
    for name, split in source.items():
        keys = sorted(rng.choice(len(split), size=50, replace=False).tolist())
        rows = query_rows(
            mnist_full,
            f"SELECT key, label, image FROM `{mnist_full.table_id(name)}` "
            f"WHERE key IN ({', '.join(map(str, keys))}) ORDER BY key",
        )
        assert [r["key"] for r in rows] == keys
        for r in rows:
            assert r["label"] == split.labels[r["key"]]
            assert np.array_equal(np.array(r["image"], dtype=np.int64), split.images[r["key"]])
    assert tables_intact(mnist_full) == []


def test_storage_read_returns_the_whole_table_losslessly(mnist_full):
    keys, labels, images = read_table_numpy(mnist_full, "valid")
    src = load_mnist()["valid"]
    assert np.array_equal(keys, np.arange(10000))
    assert np.array_equal(labels, src.labels) and np.array_equal(images, src.images)


def test_reload_replaces_rows_instead_of_duplicating(bq_settings):
    s = bq_settings.replace(dataset="mnist_idem")
    load_mnist_tables(s, limit=100)
    load_mnist_tables(s, limit=100)
    assert table_counts(s) == {"train": 100, "valid": 100, "test": 100}
    assert tables_intact(s, limit=100) == []
    load_mnist_tables(s, limit=30, splits=("test",))
    assert table_counts(s)["test"] == 30
    assert tables_intact(s, limit=100) == ["test"]


@pytest.mark.parametrize("limit", [0, -5])
def test_non_positive_limit_is_rejected(bq_settings, limit):
    with pytest.raises(UsageError, match="positive"):
        load_mnist_tables(bq_settings.replace(dataset="never"), limit=limit)


def test_unknown_table_is_a_clear_error(bq_settings):
    with pytest.raises(NotFoundError, match=r"table .*\.no_such_table does not exist"):
        read_table_numpy(bq_settings, "no_such_table")
