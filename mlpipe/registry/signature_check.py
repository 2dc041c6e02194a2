"""Checks that a SavedModel fulfils the serving contract (mlpipe.contract), without TensorFlow.

Signature `serving_default`: input `image` float32 [None, 784] of raw 0–255 pixels (the model
normalizes); outputs `class_ids` int64 [None, 1], `probabilities` and `logits` float32 [None, 10].
Extra outputs are allowed (Estimator heads add `classes`, …) but the server only returns these three.

The check reads `saved_model.pb` with TensorBoard's copy of the MetaGraphDef proto (installed with
TensorFlow, imports in milliseconds), so `mlpipe models push` and the registry tests do not pay for a
TensorFlow import; the same parse gives TF Serving's `/metadata` answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpipe.contract import IMAGE_KEY, IMAGE_PIXELS, NUM_CLASSES, OUTPUTS, SERVING_SIGNATURE
from mlpipe.errors import InvalidModelError


def read_signatures(saved_model_dir: Path) -> dict[str, Any]:
    """The SavedModel's signature defs in TF Serving's JSON shape (`{name: {inputs, outputs, …}}`)."""
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import meta_graph_pb2

    pb = Path(saved_model_dir) / "saved_model.pb"
    try:
        data = pb.read_bytes()
    except FileNotFoundError:
        raise InvalidModelError(f"{saved_model_dir} is not a SavedModel (no saved_model.pb)") from None
    except OSError as e:
        raise InvalidModelError(f"cannot read {pb}: {e.strerror}") from None
    try:
        graphs = [meta_graph_pb2.MetaGraphDef.FromString(b) for b in _meta_graph_bytes(data)]
    except (DecodeError, IndexError, ValueError):
        raise InvalidModelError(f"{pb} is not a valid SavedModel protobuf") from None
    serving = [g for g in graphs if "serve" in g.meta_info_def.tags] or graphs
    if not serving:
        raise InvalidModelError(f"{pb} holds no MetaGraph")
    return {
        name: json_format.MessageToDict(sig, preserving_proto_field_name=True)
        for name, sig in serving[0].signature_def.items()
    }


def check_contract(saved_model_dir: Path) -> dict[str, Any]:
    """Raise InvalidModelError unless the SavedModel fulfils the contract; returns its signatures."""
    sigs = read_signatures(saved_model_dir)
    where = f"{saved_model_dir}: signature {SERVING_SIGNATURE!r}"
    if SERVING_SIGNATURE not in sigs:
        raise InvalidModelError(f"{saved_model_dir} has no {SERVING_SIGNATURE!r} signature (has {sorted(sigs)})")
    sig = sigs[SERVING_SIGNATURE]
    inputs = sig.get("inputs", {})
    if set(inputs) != {IMAGE_KEY}:
        raise InvalidModelError(f"{where} must take exactly one input {IMAGE_KEY!r}, takes {sorted(inputs)}")
    _expect(where, IMAGE_KEY, inputs[IMAGE_KEY], "DT_FLOAT", IMAGE_PIXELS)
    outputs = sig.get("outputs", {})
    for name, (dtype, last) in OUTPUTS.items():
        if name not in outputs:
            raise InvalidModelError(f"{where} lacks output {name!r} (has {sorted(outputs)})")
        _expect(where, name, outputs[name], dtype, last)
    return sigs


def _expect(where: str, name: str, tensor: dict[str, Any], dtype: str, last: int) -> None:
    dims = [int(d.get("size", -1)) for d in tensor.get("tensor_shape", {}).get("dim", [])]
    if tensor.get("dtype") != dtype or dims != [-1, last]:
        raise InvalidModelError(
            f"{where}: {name!r} must be {dtype} [None, {last}], is {tensor.get('dtype')} {dims}"
        )


def _meta_graph_bytes(data: bytes) -> list[bytes]:
    """The `meta_graphs` (field 2) payloads of a serialized `SavedModel` message.

    SavedModel is `{int64 saved_model_schema_version = 1; repeated MetaGraphDef meta_graphs = 2;}`;
    TensorBoard ships MetaGraphDef but not this wrapper, so its wire format is walked here.
    """
    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            if field == 2:
                out.append(data[pos : pos + size])
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unexpected wire type {wire}")
    if pos != len(data):
        raise ValueError("truncated message")
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def build_contract_model(path: Path, seed: int = 0) -> Path:
    """Save a tiny SavedModel with exactly the contract's signature: one fixed random dense layer.

    For tests, the benchmark and trying the server before the pipeline has pushed a real model;
    different seeds give observably different predictions.
    """
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    class Dense(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(rng.normal(0, 0.05, (IMAGE_PIXELS, NUM_CLASSES)).astype("float32"))
            self.b = tf.Variable(rng.normal(0, 0.1, (NUM_CLASSES,)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_PIXELS], tf.float32, name=IMAGE_KEY)])
        def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            logits = tf.matmul(image / 255.0, self.w) + self.b
            return {
                "class_ids": tf.expand_dims(tf.argmax(logits, axis=1, output_type=tf.int64), 1),
                "probabilities": tf.nn.softmax(logits),
                "logits": logits,
            }

    module = Dense()
    tf.saved_model.save(module, str(path), signatures={SERVING_SIGNATURE: module.serve.get_concrete_function()})
    return Path(path)
