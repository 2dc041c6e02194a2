"""Deadlines for reading a request, so slow or stalled clients cannot hold the server's threads.

gunicorn's threaded worker reads a request's line, headers and body with blocking socket reads and no
deadline: a client that sends half a request line and idles keeps a thread for as long as it likes.
The front (`front.py`) arms a deadline per connection when a thread starts on it; the application
disarms it once it has the body (`body_read()`). A single watchdog thread enforces the deadlines: a
request still in its line/headers when the deadline passes is answered `408` (JSON) and its read side
shut down; one still in its body gets its read side shut down, which makes the app's read end early
and answer `408` itself (`timed_out()`).

This module imports nothing of gunicorn, so the app can call it whether or not it runs in the front
(outside it every call is a no-op).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# From the first byte of a request (or the thread picking up a fresh connection) to its last header.
HEADER_TIMEOUT_S = 10.0
# From the last header to the last byte of the body (1.5 MB at most).
BODY_TIMEOUT_S = 20.0
_TICK_S = 0.25


@dataclass(eq=False)
class _Entry:
    sock: socket.socket
    deadline: float
    in_body: bool = False
    expired: bool = field(default=False)


class ReadGuard:
    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._thread: threading.Thread | None = None

    # ---- called by the front, in the thread that handles the connection ---------------------------

    def arm(self, sock: socket.socket, timeout: float = HEADER_TIMEOUT_S) -> None:
        entry = _Entry(sock, time.monotonic() + timeout)
        self._local.entry = entry
        with self._lock:
            self._entries[id(entry)] = entry
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="read-guard", daemon=True)
                self._thread.start()

    def headers_read(self, timeout: float = BODY_TIMEOUT_S) -> None:
        entry = getattr(self._local, "entry", None)
        if entry is not None:
            with self._lock:
                entry.in_body = True
                entry.deadline = time.monotonic() + timeout

    def disarm(self) -> None:
        entry = getattr(self._local, "entry", None)
        if entry is not None:
            with self._lock:
                self._entries.pop(id(entry), None)

    def clear(self) -> None:
        self.disarm()
        self._local.entry = None

    # ---- called by the application ----------------------------------------------------------------

    def body_read(self) -> None:
        """The request is in; from here on the thread computes and answers (no read deadline)."""
        self.disarm()

    def timed_out(self) -> bool:
        entry = getattr(self._local, "entry", None)
        return entry is not None and entry.expired

    # ---- the watchdog ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            time.sleep(_TICK_S)
            now = time.monotonic()
            with self._lock:
                due = [e for e in self._entries.values() if e.deadline <= now]
                for e in due:
                    self._entries.pop(id(e), None)
                    e.expired = True
            for e in due:
                _expire(e)


def _expire(entry: _Entry) -> None:
    try:
        if not entry.in_body:
            log.info("request line/headers not received within %.0fs; answering 408", HEADER_TIMEOUT_S)
            body = json.dumps({"error": f"request not received within {HEADER_TIMEOUT_S:.0f}s"}).encode()
            head = (f"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json"
                    f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            try:
                entry.sock.send(head + body, socket.MSG_DONTWAIT)
            except OSError:
                pass
        entry.sock.shutdown(socket.SHUT_RD)  # a blocked recv() returns at once with no data
    except OSError:
        pass  # already closed


GUARD = ReadGuard()
