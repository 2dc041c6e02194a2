"""The HTTP front of `mlpipe serve`: functions-framework's gunicorn server, configured not to starve.

`python -m functions_framework` runs gunicorn with `limit_request_line=0` (unbounded) and
`(cpu count × 4)` threads, and gunicorn reads request lines, headers and bodies without a deadline,
so a handful of clients that send half a request and idle get every thread (issue 16, row 1). This
module builds the same app the same way (`functions_framework.create_app` + `create_server`, which
passes gunicorn options through) with:

- `GuardedThreadWorker`: gunicorn's threaded worker plus the read deadlines of `read_guard`
  (`HEADER_TIMEOUT_S` for line + headers, `BODY_TIMEOUT_S` for the body, then 408), a socket
  timeout on every read/write (`SOCKET_TIMEOUT_S`), and gunicorn's own error answers (400 bad request
  line, 414, 431, 501 transfer coding) as JSON instead of HTML;
- `THREADS` threads, so slow clients up to about that number cannot delay normal requests (the
  app bounds concurrent prediction work separately, see `app.MAX_CONCURRENT_PREDICTIONS`);
- request line ≤ `LIMIT_REQUEST_LINE` bytes, ≤ `LIMIT_REQUEST_FIELDS` header fields of
  ≤ `LIMIT_REQUEST_FIELD_SIZE` bytes each.

Environment overrides for experiments: MLPIPE_SERVE_THREADS.
"""

from __future__ import annotations

import argparse
import json
import os
import socket

from gunicorn import util as gunicorn_util
from gunicorn.workers.gthread import ThreadWorker

from mlpipe.serving.read_guard import GUARD
from mlpipe.serving.server import SOURCE, TARGET

THREADS = 64
LIMIT_REQUEST_LINE = 4094  # gunicorn's default; functions-framework sets 0 (unbounded)
LIMIT_REQUEST_FIELDS = 100
LIMIT_REQUEST_FIELD_SIZE = 8190
KEEPALIVE_S = 5
SOCKET_TIMEOUT_S = 30.0  # one recv(), or a whole sendall() of a response


def gunicorn_options() -> dict[str, object]:
    return {
        "worker_class": f"{__name__}.GuardedThreadWorker",
        "workers": 1,
        "threads": int(os.environ.get("MLPIPE_SERVE_THREADS", THREADS)),
        "limit_request_line": LIMIT_REQUEST_LINE,
        "limit_request_fields": LIMIT_REQUEST_FIELDS,
        "limit_request_field_size": LIMIT_REQUEST_FIELD_SIZE,
        "keepalive": KEEPALIVE_S,
        "timeout": 0,  # as functions-framework: no arbiter kill of a busy worker (predictions may be slow)
    }


def _json_error(sock, status_int, reason, mesg) -> None:
    """gunicorn's `util.write_error` (its answer to requests it cannot parse), in our JSON shape."""
    body = json.dumps({"error": f"{reason}: {mesg}"[:300]}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    gunicorn_util.write_nonblock(sock, head + body)


class GuardedThreadWorker(ThreadWorker):
    """gunicorn's gthread worker with read deadlines and JSON error pages."""

    def init_process(self) -> None:
        # gunicorn has no setting for the format of its own error answers; this process is ours.
        gunicorn_util.write_error = _json_error
        super().init_process()

    def enqueue_req(self, conn) -> None:
        if not getattr(conn, "_mlpipe_guarded", False):
            conn._mlpipe_guarded = True
            init = conn.init

            def guarded_init() -> None:
                init()
                # gunicorn sets the socket blocking (no timeout) before every request.
                conn.sock.settimeout(SOCKET_TIMEOUT_S)

            conn.init = guarded_init
        super().enqueue_req(conn)

    def handle(self, conn):
        GUARD.arm(conn.sock)
        try:
            return super().handle(conn)
        finally:
            GUARD.clear()

    def handle_request(self, req, conn):
        GUARD.headers_read()
        return super().handle_request(req, conn)

    def handle_error(self, req, client, addr, exc) -> None:
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return  # a client too slow for SOCKET_TIMEOUT_S: nothing useful to answer
        super().handle_error(req, client, addr, exc)


def main(argv: list[str] | None = None) -> None:
    from functions_framework import create_app
    from functions_framework._http import create_server

    p = argparse.ArgumentParser(description="run the serving function (use `mlpipe serve`)")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    app = create_app(TARGET, str(SOURCE), "http")
    create_server(app, False, **gunicorn_options()).run(args.host, args.port)


if __name__ == "__main__":
    main()
