"""Bounded work per request and a model cache that cannot be driven into reload storms.

In process, with real tiny SavedModels (the contract model) and a real registry.
"""

from __future__ import annotations

import base64
import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from mlpipe.errors import BadInstanceError, ServiceUnavailable
from mlpipe.registry import open_registry
from mlpipe.serving import instances
from mlpipe.serving.model_cache import CacheBusyError, ModelCache, saved_model_bytes
from tests.contract_models import fake_models  # noqa: F401  (a fixture)


def _png_bytes(extra_chunk: bytes = b"") -> bytes:
    buf = io.BytesIO()
    Image.new("L", (28, 28)).save(buf, format="PNG")
    data = buf.getvalue()
    # Insert the extra chunk right after IHDR (8-byte signature + 25-byte IHDR chunk).
    return data[:33] + extra_chunk + data[33:]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_instance(data: bytes) -> dict:
    return {"image_bytes": {"b64": base64.b64encode(data).decode()}}


def test_instances_per_request_are_capped():
    tiny = _png_instance(_png_bytes())
    body = instances.json.dumps({"instances": [tiny] * instances.MAX_INSTANCES}).encode()
    assert instances.parse_body(body).shape == (instances.MAX_INSTANCES, 784)
    # The repro: ~11,800 tiny PNGs fit in 1.5 MB; now refused before any is decoded.
    body = instances.json.dumps({"instances": [tiny] * 11_802}, separators=(",", ":")).encode()
    assert len(body) < 1_500_000
    with pytest.raises(BadInstanceError, match="at most 1000"):
        instances.parse_body(body)


def test_png_text_chunk_bombs_are_refused_before_inflating():
    bomb = _chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(b"\x00" * 900_000, 9))
    assert len(bomb) < 100_000
    with pytest.raises(BadInstanceError, match="not a readable PNG"):
        instances.parse_instance(_png_instance(_png_bytes(bomb)), 0)
    small_text = _chunk(b"tEXt", b"Software\x00test")
    assert instances.parse_instance(_png_instance(_png_bytes(small_text)), 0).shape == (784,)


# ---- the model cache ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def three_versions(tmp_path_factory, fake_models):  # noqa: F811
    reg = open_registry(tmp_path_factory.mktemp("cache-registry"), "mnist")
    infos = [reg.push(fake_models[i % 2]) for i in range(3)]
    return reg, infos


def test_cycling_over_more_versions_than_fit_is_503_not_a_reload_storm(three_versions):
    reg, (v1, v2, v3) = three_versions
    cache = ModelCache(reg.local_saved_model, capacity=2, min_resident_s=60)
    batch = np.zeros((1, 784), np.float32)
    for info in (v1, v2, v1, v2):
        cache.get(info).predict(batch)
    assert cache.loads == 2
    with pytest.raises(CacheBusyError) as busy:
        cache.get(v3)
    assert isinstance(busy.value, ServiceUnavailable) and 1 <= busy.value.retry_after <= 60
    for _ in range(5):  # the storm: v3 keeps being asked for; v1 and v2 stay loaded, no reloads
        with pytest.raises(CacheBusyError):
            cache.get(v3)
        cache.get(v1)
    assert cache.loads == 2
    # Once the residents are old enough, the least recently used one makes room.
    cache.min_resident_s = 0
    cache.get(v3)
    assert cache.loads == 3 and len(cache.loaded()) == 2


def test_the_cache_is_bounded_by_bytes(three_versions):
    reg, (v1, v2, _) = three_versions
    size = saved_model_bytes(reg.local_saved_model(v1))
    cache = ModelCache(reg.local_saved_model, capacity=10, max_bytes=int(size * 1.5), min_resident_s=0)
    cache.get(v1)
    cache.get(v2)
    assert len(cache.loaded()) == 1  # two would exceed the byte bound
    tiny = ModelCache(reg.local_saved_model, max_bytes=size // 2)
    with pytest.raises(ServiceUnavailable, match="larger than the model cache"):
        tiny.get(v1)


def test_concurrent_first_requests_load_a_version_once(three_versions):
    reg, (_, _, v3) = three_versions
    cache = ModelCache(reg.local_saved_model)
    got, errors = [], []

    def ask():
        try:
            got.append(cache.get(v3))
        except Exception as e:  # pragma: no cover - shown by the assertion
            errors.append(e)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(got) == 8 and len({id(m) for m in got}) == 1
    assert cache.loads == 1, f"{cache.loads} loads in {time.monotonic() - started:.1f}s"


# ---- query parameters: 400, never 500 (row 7) ----------------------------------------------------

@pytest.mark.parametrize("query", ["pageSize=²", "pageSize=٣", "pageToken=" + "9" * 5000, "pageSize=1e3",
                                   "pageSize=-1", "pageSize= 5"])
def test_weird_page_parameters_are_400(three_versions, tmp_path, query):
    import flask

    from mlpipe.serving.app import ServingApp
    from mlpipe.serving.guard import EdgePolicy
    from tests.conftest import make_settings

    reg, _ = three_versions
    settings = make_settings(tmp_path, log_predictions=False, registry_root=reg.location)
    serving = ServingApp(settings, EdgePolicy())
    with flask.Flask("t").test_request_context(f"/v1/projects/local-project/models/mnist/versions?{query}"):
        resp = serving.handle(flask.request)
    assert resp.status_code == 400, resp.get_data()
    assert "must be an integer" in resp.get_json()["error"]
