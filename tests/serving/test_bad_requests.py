"""Every bad request gets a 4xx with a JSON `{"error": ...}` body, and touches nothing."""

from __future__ import annotations

import base64
import http.client
import io
import json

import pytest
from PIL import Image

ML = "/v1/projects/local-project/models"
PREDICT = f"{ML}/mnist:predict"
GOOD = [0] * 784


def _png(size=(28, 28), mode="L", fmt="PNG") -> str:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def _check_error(status, doc, headers, want_status, fragment):
    assert status == want_status, doc
    assert headers["Content-Type"] == "application/json"
    assert isinstance(doc, dict) and set(doc) == {"error"} and fragment in doc["error"], doc


BAD_BODIES = [
    (b"{not json", "not valid JSON"),
    (b"", "empty"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"inputs": [[0]]}', 'no "instances"'),
    (b'{"instances": []}', "is empty"),
    (b'{"instances": {"image": []}}', "must be a list"),
    (b'{"instances": [[0]], "extra": 1}', "unknown request field"),
    (b'{"instances": [[0]], "signature_name": "other"}', "signature_name"),
    (json.dumps({"instances": [[0] * 783]}).encode(), "got shape [783]"),
    (json.dumps({"instances": [[[0] * 28] * 27]}).encode(), "got shape [27, 28]"),
    (json.dumps({"instances": [[[0] * 28] * 27 + [[0] * 27]]}).encode(), "784 pixels"),
    (json.dumps({"instances": [[[[0, 0]] * 28] * 28]}).encode(), "784 pixels"),
    (json.dumps({"instances": [GOOD[:-1] + ["7"]]}).encode(), "non-numeric"),
    (json.dumps({"instances": [GOOD[:-1] + [True]]}).encode(), "non-numeric"),
    (json.dumps({"instances": [GOOD[:-1] + [None]]}).encode(), "non-numeric"),
    (json.dumps({"instances": [GOOD[:-1] + [{}]]}).encode(), "non-numeric"),
    (json.dumps({"instances": [GOOD[:-1] + [256]]}).encode(), "0..255"),
    (json.dumps({"instances": [GOOD[:-1] + [-0.5]]}).encode(), "0..255"),
    (json.dumps({"instances": [GOOD[:-1] + [10**400]]}).encode(), "0..255"),
    (b'{"instances": [[' + b"0," * 783 + b"NaN]]}", "NaN"),
    (b'{"instances": [[' + b"0," * 783 + b"-Infinity]]}", "Infinity"),
    (b'{"instances": [' + b"[" * 20000 + b"]" * 20000 + b"]}", "nested too deeply"),
    (json.dumps({"instances": [GOOD, {"image": GOOD, "label": 3}]}).encode(), "instances[1]"),
    (json.dumps({"instances": [{"pixels": GOOD}]}).encode(), '"image" or "image_bytes"'),
    (json.dumps({"instances": ["abc"]}).encode(), "instances[0]"),
    (json.dumps({"instances": [{"image": "abc"}]}).encode(), "list of 784"),
    (json.dumps({"instances": [{"image_bytes": "abc"}]}).encode(), "b64"),
    (json.dumps({"instances": [{"image_bytes": {"b64": "not base64!"}}]}).encode(), "not valid base64"),
    (json.dumps({"instances": [{"image_bytes": {"b64": base64.b64encode(b"GIF89a").decode()}}]}).encode(),
     "not a readable PNG"),
    (json.dumps({"instances": [{"image_bytes": {"b64": _png(fmt="JPEG")}}]}).encode(), "not a readable PNG"),
    (json.dumps({"instances": [{"image_bytes": {"b64": _png((28, 29))}}]}).encode(), "expected 28x28"),
    (json.dumps({"instances": [{"image_bytes": {"b64": _png(mode="I;16")}}]}).encode(), "PNG mode"),
]


@pytest.mark.parametrize("body, fragment", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_bad_prediction_bodies_are_400(served, body, fragment):
    for path in (PREDICT, "/v1/models/mnist:predict"):
        _check_error(*served.request("POST", path, raw=body), 400, fragment)


@pytest.mark.parametrize(
    "method, path, status, fragment",
    [
        ("POST", f"{ML}/fashion:predict", 404, "model 'fashion' not found"),
        ("POST", f"{ML}/mnist/versions/v9:predict", 404, "no version 'v9'"),
        ("POST", "/v1/models/mnist/versions/9:predict", 404, "no version 'v9'"),
        ("POST", "/v1/models/mnist/labels/canary:predict", 404, "no alias 'canary'"),
        ("POST", "/v1/models/mnist/versions/abc:predict", 400, "positive integer"),
        ("POST", "/v1/models/mnist/versions/01:predict", 400, "positive integer"),
        ("POST", "/v1/projects/other-project/models/mnist:predict", 404, "project 'other-project'"),
        ("GET", "/v1/projects/other-project/models", 404, "project 'other-project'"),
        ("GET", f"{ML}/fashion", 404, "not found"),
        ("GET", f"{ML}/mnist/versions/v9", 404, "no version"),
        ("GET", "/v1/models/fashion/metadata", 404, "not found"),
        ("GET", "/v1/models/mnist/labels/nope", 404, "no alias"),
        ("DELETE", f"{ML}/mnist/versions/v9", 404, "no version"),
        ("POST", f"{ML}/mnist/versions/v9:setDefault", 404, "no version"),
        ("GET", f"{ML}/mnist/versions?pageSize=0", 400, "pageSize"),
        ("GET", f"{ML}/mnist/versions?pageSize=abc", 400, "pageSize"),
        ("GET", f"{ML}/mnist/versions?pageToken=99", 400, "pageToken"),
        ("GET", f"{ML}/bad-name", 400, "invalid model name"),
        ("GET", f"{ML}/mnist/versions/v1%20", 400, "invalid version name"),
        ("POST", "/v1/models/mnist/labels/no-such:predict", 400, "invalid alias name"),
        ("GET", "/", 404, "no such resource"),
        ("GET", "/robots.txt", 404, "Not Found"),
        ("GET", "/favicon.ico", 404, "Not Found"),
        ("GET", "/v2/models/mnist", 404, "no such resource"),
        ("GET", f"{ML}/mnist:explain", 404, "no such resource"),
        ("GET", PREDICT, 405, "not allowed"),
        ("PUT", f"{ML}/mnist", 405, "not allowed"),
        ("PATCH", f"{ML}/mnist/versions/v1", 405, "not allowed"),
        ("DELETE", "/v1/models/mnist", 405, "not allowed"),
        ("POST", "/v1/models/mnist/metadata", 405, "not allowed"),
    ],
)
def test_unknown_things_and_wrong_methods(served, method, path, status, fragment):
    body = {"instances": [GOOD]} if method == "POST" else None
    got = served.request(method, path, body)
    _check_error(*got, status, fragment)
    if status == 405:
        assert method not in got[2]["Allow"] and "OPTIONS" in got[2]["Allow"]


TRAVERSALS = [
    f"{ML}/../../../etc/passwd",
    f"{ML}/mnist/versions/../../../../../../tmp",
    f"{ML}/mnist/versions/..%2F..%2F..%2Fsecret",
    f"{ML}/mnist/versions/%2e%2e",
    f"{ML}/%2E%2E/versions/v1",
    f"{ML}/mnist%2fversions%2fv1",
    f"{ML}/mnist/versions/..%5c..%5csecret",
    "/v1/models/..%2f..%2fsecret/metadata",
    "/v1/models/mnist/labels/..:predict",
    "/v1/models/./mnist",
]


@pytest.mark.parametrize("path", TRAVERSALS)
@pytest.mark.parametrize("method", ["GET", "DELETE", "POST"])
def test_path_traversal_is_400_and_touches_nothing(served, method, path):
    state = served.settings.state_dir
    secret = state / "secret"
    secret.mkdir(exist_ok=True)
    (secret / "version.json").write_text("{}")
    before = sorted((p, p.stat().st_mtime_ns) for p in state.rglob("*") if "logs" not in p.parts
                    and not p.name.startswith("server-"))
    got = served.request(method, path, {"instances": [GOOD]} if method == "POST" else None)
    _check_error(*got, 400, "are not allowed")
    after = sorted((p, p.stat().st_mtime_ns) for p in state.rglob("*") if "logs" not in p.parts
                   and not p.name.startswith("server-"))
    assert after == before


def test_oversized_body_is_413(served):
    big = b'{"instances": [' + b"[" + b"0," * 783 + b"0]," * 1 + b"0" * 1_600_000 + b"]}"
    _check_error(*served.request("POST", PREDICT, raw=big), 413, "larger than")


def test_oversized_chunked_body_is_413(served):
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    chunks = (b"x" * 100_000 for _ in range(20))  # 2 MB, no Content-Length
    conn.request("POST", PREDICT, body=chunks, encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    assert resp.status == 413 and "larger than" in doc["error"]


def test_body_just_under_the_limit_is_parsed(served):
    body = json.dumps({"instances": [GOOD] * 600}).encode()
    assert len(body) < 1_500_000
    status, doc, _ = served.request("POST", PREDICT, raw=body)
    assert status == 200 and len(doc["predictions"]) == 600


def test_head_and_options(served):
    status, doc, headers = served.request("HEAD", "/v1/models/mnist")
    assert status == 200 and doc is None
    status, doc, headers = served.request("OPTIONS", PREDICT)
    assert status == 204 and headers["Allow"] == "POST, OPTIONS"
