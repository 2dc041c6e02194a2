"""Read MNIST tables back from BigQuery into numpy, through the Storage Read API."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from google.api_core import exceptions as gexc

from mlpipe.bigquery.client import bq_client, read_client
from mlpipe.config import Settings
from mlpipe.contract import IMAGE_PIXELS
from mlpipe.errors import DataIntegrityError, NotFoundError


def read_table_arrow(settings: Settings, table: str, client=None) -> pa.Table:
    client = client or bq_client(settings)
    try:
        ref = client.get_table(settings.table_id(table))
    except gexc.NotFound:
        raise NotFoundError(f"table {settings.table_id(table)} does not exist") from None
    return client.list_rows(ref).to_arrow(bqstorage_client=read_client(settings))


def arrow_to_numpy(data: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, labels, images (n, 784) uint8) sorted by key; rejects ragged or out-of-range images."""
    keys = data.column("key").to_numpy()
    labels = data.column("label").to_numpy()
    image = data.column("image").combine_chunks()
    lengths = image.value_lengths().to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != IMAGE_PIXELS).any():
        raise DataIntegrityError(f"{int((lengths != IMAGE_PIXELS).sum())} images do not have 784 pixels")
    flat = image.flatten().to_numpy(zero_copy_only=False)
    if flat.size and (flat.min() < 0 or flat.max() > 255):
        raise DataIntegrityError("pixel values outside 0..255")
    order = np.argsort(keys, kind="stable")
    images = flat.astype(np.uint8).reshape(-1, IMAGE_PIXELS)
    return keys[order], labels[order], images[order]


def read_table_numpy(settings: Settings, table: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return arrow_to_numpy(read_table_arrow(settings, table))
