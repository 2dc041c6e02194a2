"""The HTTP front over raw sockets: slow or stalled clients cannot starve it, and whatever gunicorn
itself refuses (request line too long, too many headers, garbage, bad chunks) is answered in JSON.

A server of its own (an empty registry): the slow clients here must not slow other test modules.
"""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from mlpipe.serving import front, read_guard
from tests.conftest import make_settings
from tests.serving.server import start_server

pytestmark = pytest.mark.e2e

STATUS = "/v1/models/mnist"  # a 404 from the app: routed and answered by our code


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("slow-state")
    srv = start_server(make_settings(state, log_predictions=False), state)
    yield srv
    srv.stop()


def _connect(server, timeout=10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 response."""
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    body = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def _raw(server, data: bytes, timeout=10.0) -> tuple[int, dict[str, str], dict]:
    with _connect(server, timeout) as s:
        s.sendall(data)
        status, headers, body = _read_response(s)
    return status, headers, json.loads(body)


def _get(server, timeout=10.0) -> int:
    req = f"GET {STATUS} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    return _raw(server, req, timeout)[0]


SLOW_OPENINGS = [
    b"GET /v1/mod",                                                      # half a request line
    b"GET /v1/models/mnist HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",    # half the headers
    b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"    # a huge body, never sent
    b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n",
    b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"    # a small body, half sent
    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"instances\": [",
    b"",                                                                 # connect and say nothing
]


def test_fifty_slow_clients_do_not_starve_normal_requests(server):
    slow = []
    try:
        for i in range(50):
            s = _connect(server)
            s.sendall(SLOW_OPENINGS[i % len(SLOW_OPENINGS)])
            slow.append(s)
        time.sleep(0.5)  # every slow socket is now accepted and holding whatever it holds
        # Each normal request must be answered while all 50 stay open (before: none was, ever).
        for _ in range(10):
            assert _get(server, timeout=8.0) == 404
    finally:
        for s in slow:
            s.close()


def test_a_stalled_request_line_is_answered_408_in_json(server):
    with _connect(server, timeout=read_guard.HEADER_TIMEOUT_S + 10) as s:
        s.sendall(b"GET /v1/models/mnist HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        status, headers, body = _read_response(s)
    assert status == 408 and headers["content-type"] == "application/json"
    assert "not received" in json.loads(body)["error"]
    assert time.monotonic() - started >= read_guard.HEADER_TIMEOUT_S - 1


def test_a_stalled_body_is_answered_408_in_json(server):
    with _connect(server, timeout=read_guard.HEADER_TIMEOUT_S + read_guard.BODY_TIMEOUT_S + 10) as s:
        s.sendall(b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inst")
        status, headers, body = _read_response(s)
    assert status == 408 and headers["content-type"] == "application/json", body
    assert "body not received" in json.loads(body)["error"]


def test_a_huge_declared_body_is_refused_without_waiting_for_it(server):
    req = (b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
           b"\r\nContent-Length: 10000000\r\n\r\n")
    # Before: the app waited for (up to 64 MB of) the body, so no answer came until the client gave up.
    status, _, doc = _raw(server, req, timeout=5.0)
    assert status == 413 and "larger than" in doc["error"]


def test_a_long_request_line_is_414_in_json_without_an_echo(server):
    path = "/v1/models/" + "a" * 2_000_000
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    with _connect(server) as s:
        try:
            s.sendall(req)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading 2 MB
        status, headers, body = _read_response(s)
    assert status == 414 and headers["content-type"] == "application/json"
    assert len(body) < 1000 and len(path) > front.LIMIT_REQUEST_LINE


@pytest.mark.parametrize("raw, want", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /v1/models/mnist HTTP/1.1\r\nHost: 127.0.0.1\r\n"
     + b"".join(b"X-H%d: 1\r\n" % i for i in range(200)) + b"\r\n", 431),
    (b"GET /v1/models/mnist HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"GET /v1/models/mnist HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n", 400),
])
def test_malformed_http_is_answered_in_json(server, raw, want):
    status, headers, doc = _raw(server, raw)
    assert status == want and headers["content-type"] == "application/json"
    assert set(doc) == {"error"}


def test_a_bad_chunk_size_is_400_not_500(server):
    req = (b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
           b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
    status, headers, doc = _raw(server, req)
    assert status == 400 and headers["content-type"] == "application/json", doc
