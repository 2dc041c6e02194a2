"""TFMA's evaluation files, read without TensorFlow.

`tfma.load_metrics` / `load_plots` / `load_validation_result` are three lines of work — glob
`metrics*` / `plots*` / `validations*` in the evaluation directory, read TFRecords, parse protos — but
importing `tensorflow_model_analysis` pulls in TensorFlow and Beam (10–20 s), which made `mlpipe runs`
and `mlpipe lineage` slow. This module does the same three lines with the protobuf runtime alone:

- TFRecords are read in Python (the format is length, masked CRC32C of the length, data, masked CRC32C
  of the data; both checksums are verified, as TensorFlow's reader does);
- the protos are TFMA's own, built from the serialized file descriptors in TFMA's generated `*_pb2.py`
  files (read as text, not imported: importing `tensorflow_model_analysis.proto.*` runs the package's
  `__init__`, which imports TensorFlow) into a private descriptor pool, so they never clash with the
  real TFMA module should a process load both.
"""

from __future__ import annotations

import ast
import functools
import glob
import importlib.util
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import google_crc32c
from google.protobuf import descriptor_pool, message_factory, wrappers_pb2

METRICS_PREFIX = "metrics"  # tfma.constants.METRICS_KEY
PLOTS_PREFIX = "plots"  # tfma.constants.PLOTS_KEY
VALIDATIONS_PREFIX = "validations"  # tfma.constants.VALIDATIONS_KEY
# TFMA's generated modules, in dependency order (validation_result imports the other two).
_PROTO_FILES = ("config_pb2.py", "metrics_for_slice_pb2.py", "validation_result_pb2.py")
_MASK_DELTA = 0xA282EAD8


class CorruptRecordError(ValueError):
    """A TFRecord file whose framing or checksums do not add up (TensorFlow's DataLossError)."""


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def read_tfrecords(path: str) -> Iterator[bytes]:
    """The records of one uncompressed TFRecord file, checksums verified."""
    with open(path, "rb") as fh:
        while True:
            header = fh.read(12)
            if not header:
                return
            if len(header) != 12:
                raise CorruptRecordError(f"truncated record header in {path}")
            length, length_crc = struct.unpack("<QI", header)
            if _masked_crc(header[:8]) != length_crc:
                raise CorruptRecordError(f"bad length checksum in {path}")
            data = fh.read(length)
            footer = fh.read(4)
            if len(data) != length or len(footer) != 4:
                raise CorruptRecordError(f"truncated record in {path}")
            if _masked_crc(data) != struct.unpack("<I", footer)[0]:
                raise CorruptRecordError(f"bad data checksum in {path}")
            yield data


def _tfma_proto_dir() -> Path:
    spec = importlib.util.find_spec("tensorflow_model_analysis")  # finds the package, runs nothing
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("tensorflow_model_analysis is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "proto"


def _serialized_descriptor(pb2_path: Path) -> bytes:
    """The `AddSerializedFile(b'…')` argument of a protoc-generated module."""
    for node in ast.walk(ast.parse(pb2_path.read_text(), str(pb2_path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "AddSerializedFile" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, bytes)):
            return node.args[0].value
    raise ImportError(f"no serialized file descriptor in {pb2_path}")


@functools.cache
def _message_classes() -> dict[str, type]:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    proto_dir = _tfma_proto_dir()
    for name in _PROTO_FILES:
        pool.AddSerializedFile(_serialized_descriptor(proto_dir / name))
    # protobuf ≥ 4.21 has GetMessageClass; 3.20 (this stack) only the factory's GetPrototype.
    get_class = getattr(message_factory, "GetMessageClass", None) or message_factory.MessageFactory(pool).GetPrototype
    names = ("MetricsForSlice", "PlotsForSlice", "ValidationResult")
    return {n: get_class(pool.FindMessageTypeByName(f"tensorflow_model_analysis.{n}")) for n in names}


def message_class(name: str) -> type:
    """TFMA's `MetricsForSlice`, `PlotsForSlice` or `ValidationResult` message class (private pool)."""
    return _message_classes()[name]


def _paths(output_path: str, prefix: str, file_format: str) -> list[str]:
    """TFMA's file matching: `<dir>/<prefix>*.<format>`, else (older outputs) `<dir>/<prefix>*`."""
    base = os.path.join(output_path, prefix) if os.path.isdir(output_path) else output_path
    pattern = glob.escape(base) + "*"
    paths = sorted(glob.glob(pattern + f".{file_format}")) if file_format else []
    return paths or sorted(glob.glob(pattern))


def _parse_all(paths: Iterable[str], message: str) -> Iterator:
    cls = message_class(message)
    for path in paths:
        for record in read_tfrecords(path):
            yield cls.FromString(record)


def load_metrics(output_path: str) -> Iterator:
    """MetricsForSlice records, as `tfma.load_metrics(output_path)`."""
    return _parse_all(_paths(output_path, METRICS_PREFIX, "tfrecord"), "MetricsForSlice")


def load_plots(output_path: str) -> Iterator:
    """PlotsForSlice records, as `tfma.load_plots(output_path)`."""
    return _parse_all(_paths(output_path, PLOTS_PREFIX, "tfrecord"), "PlotsForSlice")


def load_validation_result(output_path: str):
    """The one ValidationResult, as `tfma.load_validation_result(output_path)`; ValueError when there
    is not exactly one."""
    base = os.path.join(output_path, VALIDATIONS_PREFIX) if os.path.isdir(output_path) else output_path
    records = list(_parse_all(sorted(glob.glob(glob.escape(base) + "*")), "ValidationResult"))
    if len(records) != 1:
        raise ValueError(f"expected one validation result under {output_path}, found {len(records)}")
    return records[0]
