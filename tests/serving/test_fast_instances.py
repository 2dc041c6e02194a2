"""The fast road for request bodies (orjson + one numpy conversion) gives the standard road's answer:
the same float32 batch, or the same BadInstanceError message, on valid, odd and hostile bodies."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from mlpipe.errors import BadInstanceError
from mlpipe.serving import instances


def standard_parse_body(body: bytes):
    """What parse_body did before the fast road: `json` decoding, then instance by instance."""
    original = instances.orjson, instances._flat_batch
    instances.orjson, instances._flat_batch = None, lambda *_, **__: None
    try:
        return instances.parse_body(body)
    finally:
        instances.orjson, instances._flat_batch = original


def outcome(parse, body: bytes):
    try:
        out = parse(body)
    except BadInstanceError as e:
        return ("error", str(e))
    return ("ok", out.dtype.str, out.shape, out.tobytes())


def pixels(rng: random.Random, n: int = 784) -> list:
    return [rng.choice([rng.randint(0, 255), rng.random() * 255, 0, 255, 0.0]) for _ in range(n)]


def bodies() -> list[bytes]:
    rng = random.Random(17)
    ok = [pixels(rng) for _ in range(5)]
    docs = [
        {"instances": [{"image": p} for p in ok]},
        {"instances": ok},
        {"instances": [{"image": ok[0]}, ok[1]]},
        {"instances": [{"image": ok[0]}], "signature_name": "serving_default"},
        {"instances": [{"image": [ok[0][i * 28:(i + 1) * 28] for i in range(28)]}]},  # 28×28
        {"instances": [{"image": ok[0][:783]}]},
        {"instances": [{"image": ok[0] + [1]}]},
        {"instances": [{"image": ok[0][:-1] + [256]}]},
        {"instances": [{"image": ok[0][:-1] + [-0.5]}]},
        {"instances": [{"image": ok[0][:-1] + [True]}]},
        {"instances": [{"image": ok[0][:-1] + ["5"]}]},
        {"instances": [{"image": ok[0][:-1] + [None]}]},
        {"instances": [{"image": ok[0][:-1] + [[1]]}]},
        {"instances": [ok[0], {"image": ok[1][:-1] + [300]}]},  # the second instance is bad
        {"instances": [{"image": ok[0], "extra": 1}]},
        {"instances": [{"image_bytes": {"b64": "xx"}}]},
        {"instances": []},
        {"instances": {"image": ok[0]}},
        {"instances": [ok[0]], "signature_name": 2**70},  # a long int, in an error message
        {"signature_name": "x", "instances": [ok[0]]},
        {"instance": [ok[0]]},
        [ok[0]],
    ]
    raw = [json.dumps(d).encode() for d in docs]
    flat = json.dumps({"instances": [ok[0]]})
    raw += [
        flat.replace("255", "NaN", 1).encode(), flat.replace("255", "Infinity", 1).encode(),
        flat.replace("255", "1e400", 1).encode(), flat.replace("255", "-1e400", 1).encode(),
        flat.replace("255", "18446744073709551616", 1).encode(),  # beyond 64 bits
        flat.replace("255", "-9223372036854775809", 1).encode(),
        flat.replace("255", "1" + "0" * 400, 1).encode(),  # beyond float64
        flat.replace("255", "255.00000000000000000001", 1).encode(),
        flat.encode()[:-3], flat.encode() + b" x", flat.encode() + b"\x00", b"\xef\xbb\xbf" + flat.encode(),
        flat.encode("utf-16"), b"\xff\xfe", b"", b"   ", b"null", b"[]", b"{}", b'{"instances": "\\ud800"}',
        b'{"instances": [' + b"[" * 600 + b"]" * 600 + b"]}",  # deep, but not too deep for orjson
        b'{"instances": [' + b"[" * 2000 + b"]" * 2000 + b"]}",
        b'{"instances": [{"image": [' + b"1," * 783 + b"1]}], \"instances\": []}",  # duplicate key: last wins
    ]
    return raw


@pytest.mark.parametrize("index", range(len(bodies())))
def test_fast_and_standard_roads_agree(index):
    body = bodies()[index]
    assert outcome(instances.parse_body, body) == outcome(standard_parse_body, body)


def test_the_fast_road_is_taken_for_the_common_request():
    rng = random.Random(3)
    doc = {"instances": [{"image": pixels(rng)} for _ in range(3)]}
    batch = instances._flat_batch(instances.parse_json(json.dumps(doc).encode())["instances"], False)
    assert batch is not None and batch.shape == (3, 784) and batch.dtype == np.float32
    if instances.orjson is not None:
        assert instances.orjson.loads(json.dumps(doc)) == doc
