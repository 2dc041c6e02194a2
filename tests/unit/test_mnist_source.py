import numpy as np

from mlpipe.bigquery.load import split_to_arrow
from mlpipe.data.mnist_source import load_mnist


def test_splits_are_the_classic_mnist_sizes():
    data = load_mnist()
    assert {k: len(v) for k, v in data.items()} == {"train": 50000, "valid": 10000, "test": 10000}
    for split in data.values():
        assert split.images.dtype == np.uint8 and split.images.shape[1] == 784
        assert set(np.unique(split.labels)) == set(range(10))


def test_arrow_rows_keep_pixels_exactly():
    split = load_mnist()["valid"]
    table = split_to_arrow(split, limit=5)
    assert table.num_rows == 5
    assert table.column("key").to_pylist() == [0, 1, 2, 3, 4]
    assert table.column("image").to_pylist()[3] == split.images[3].tolist()
