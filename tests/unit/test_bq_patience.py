"""`ensure_running` tells a busy emulator (slow to answer) from a stopped one (connection refused)."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from mlpipe.bigquery import service
from mlpipe.errors import ServiceUnavailable
from tests.conftest import free_port, make_settings


class _Slow(http.server.BaseHTTPRequestHandler):
    delay = 3.5  # longer than is_healthy's 2 s

    def do_GET(self):  # noqa: N802
        time.sleep(self.delay)
        body = b'{"datasets": []}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_endpoint(tmp_path):
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield make_settings(tmp_path).replace(bq_port=port)
    finally:
        server.shutdown()


def test_a_busy_service_that_answers_late_is_running(slow_endpoint):
    assert not service.is_healthy(slow_endpoint)  # too slow for one health check ...
    service.ensure_running(slow_endpoint)  # ... but it answers, so the run goes on


def test_a_refused_connection_fails_at_once(tmp_path):
    settings = make_settings(tmp_path)  # nothing listens on its free port
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=f"not reachable at http://127.0.0.1:{settings.bq_port}"):
        service.ensure_running(settings, patience=60)
    assert time.monotonic() - started < 30  # did not wait out the patience
