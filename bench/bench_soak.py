"""Soak benchmark: mixed traffic, slow clients and set-default flips against `mlpipe serve`.

Pushes two tiny contract models (v1, v2) into a temporary registry, runs `mlpipe serve` on a free
loopback port (prediction logging off) and measures:
1. starvation: p50/p99 of sequential one-instance predictions without, then with, 50 slow clients
   holding sockets (half request lines, half headers, declared bodies never sent, idle connects;
   each re-opened as soon as the server drops it);
2. soak: `--threads` clients for `--minutes` sending a mix of valid predictions (pixel lists and PNGs,
   default / named versions), invalid bodies (must be 400), registry reads, and set-default flips
   over HTTP, while 10 slow clients keep sockets busy; per kind p50/p99 and status counts, and the
   server's RSS (arbiter + worker) sampled over time.
Done when: 0 5xx, 0 connection errors, RSS flat (after the first 1,000 requests vs the end).

    .venv/bin/python bench/bench_soak.py [--minutes 10] [--quick] [--no-write]

`--quick` (about a minute, prints only, never writes BENCHMARKS.md) shows the script works.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from mlpipe.procutil import free_loopback_port  # noqa: E402
from mlpipe.registry import open_registry  # noqa: E402
from mlpipe.registry.signature_check import build_contract_model  # noqa: E402

ML = "/v1/projects/local-project/models/mnist"
SLOW_OPENINGS = [
    b"GET /v1/mod",
    b"GET /v1/models/mnist HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 10000000\r\n\r\n",
    b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{\"instances\": [",
    b"",
]
HEADERS = {"Content-Type": "application/json"}


def _png_b64(img: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img.reshape(28, 28).astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


class SlowClients:
    """`n` sockets that each send a partial request and then idle; re-opened when dropped."""

    def __init__(self, port: int, n: int) -> None:
        self.port, self.n = port, n
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.reopened = 0

    def __enter__(self) -> SlowClients:
        self._thread.start()
        time.sleep(1.0)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _open(self, i: int) -> socket.socket | None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            s.sendall(SLOW_OPENINGS[i % len(SLOW_OPENINGS)])
            s.setblocking(False)
            return s
        except OSError:
            return None

    def _run(self) -> None:
        socks = [self._open(i) for i in range(self.n)]
        while not self._stop.wait(0.2):
            for i, s in enumerate(socks):
                alive = s is not None
                if alive:
                    try:
                        s.recv(65536, socket.MSG_PEEK)
                        alive = False  # answered (408/413) or closed: the server let go of it
                    except BlockingIOError:
                        alive = True  # nothing to read: still held open by the server
                    except OSError:
                        alive = False
                if not alive:
                    if s is not None:
                        s.close()
                    socks[i] = self._open(i)
                    self.reopened += 1
        for s in socks:
            if s is not None:
                s.close()


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unexpected: list[str] = field(default_factory=list)
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, status: int | None, ms: float, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.count += 1
            if status is None:
                self.errors[kind] += 1
            else:
                self.statuses[kind][status] += 1
                self.latencies[kind].append(ms)
            if not ok and len(self.unexpected) < 20:
                self.unexpected.append(f"{kind}: {status} {detail[:160]}")


def _request(port: int, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=HEADERS if body is not None else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _rss_mb(pid: int) -> float:
    """RSS of `pid` and its children (gunicorn's arbiter and worker), MB."""
    total = 0
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _start_server(state: Path, port: int, threads: int | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mlpipe.cli", "serve", "--port", str(port), "--no-log-predictions",
           "--state-dir", str(state)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPE_")}
    if threads is not None:
        env["MLPIPE_SERVE_THREADS"] = str(threads)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(state / "server.log", "wb"))
    body = json.dumps({"instances": [[0] * 784]}).encode()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(state / 'server.log').read_text()[-2000:]}")
        try:
            if _request(port, "POST", f"{ML}:predict", body)[0] == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not answer within 180 s")


def _sequential(port: int, bodies: list[bytes]) -> list[float]:
    out = []
    for body in bodies:
        t = time.perf_counter()
        status, payload = _request(port, "POST", f"{ML}:predict", body)
        if status != 200:
            raise RuntimeError(f"prediction failed: {status} {payload[:200]!r}")
        out.append((time.perf_counter() - t) * 1000)
    return out


def _traffic(port: int, images: np.ndarray, stats: Stats, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    bad = [b"{not json", b'{"instances": []}', json.dumps({"instances": [[0] * 783]}).encode(),
           json.dumps({"instances": [[300] * 784]}).encode()]
    while not stop.is_set():
        r = rng.random()
        t = time.perf_counter()
        try:
            if r < 0.45:
                kind, n = "predict (pixels)", rng.choice((1, 8))
                idx = rng.randrange(0, len(images) - n)
                body = json.dumps({"instances": images[idx : idx + n].tolist()}).encode()
                path = rng.choice((f"{ML}:predict", f"{ML}/versions/v1:predict", f"{ML}/versions/v2:predict"))
                status, payload = _request(port, "POST", path, body)
                ok = status == 200
            elif r < 0.55:
                kind = "predict (PNG)"
                body = json.dumps({"instances": [{"image_bytes": {"b64": _png_b64(images[rng.randrange(1000)])}}]})
                status, payload = _request(port, "POST", f"{ML}:predict", body.encode())
                ok = status == 200
            elif r < 0.75:
                kind = "invalid body (400)"
                status, payload = _request(port, "POST", f"{ML}:predict", rng.choice(bad))
                ok = status == 400
            elif r < 0.95:
                kind = "registry read"
                path = rng.choice((ML, f"{ML}/versions", f"{ML}/versions/v2", "/v1/models/mnist/metadata"))
                status, payload = _request(port, "GET", path, None)
                ok = status == 200
            else:
                kind = "set-default flip"
                version = rng.choice(("v1", "v2"))
                status, payload = _request(port, "POST", f"{ML}/versions/{version}:setDefault", b"{}")
                ok = status == 200
        except OSError as e:
            stats.add(kind, None, 0.0, False, repr(e))
            continue
        stats.add(kind, status, (time.perf_counter() - t) * 1000, ok, payload.decode(errors="replace"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="soak duration (default 10)")
    parser.add_argument("--quick", action="store_true", help="about a minute in all; prints, never writes")
    parser.add_argument("--threads", type=int, default=4, help="traffic client threads (default 4)")
    parser.add_argument("--slow", type=int, default=50, help="slow clients in the starvation check")
    parser.add_argument("--server-threads", type=int, help="override the front's thread count "
                        "(MLPIPE_SERVE_THREADS; for comparing settings)")
    parser.add_argument("--starvation-only", action="store_true", help="skip the soak phase")
    parser.add_argument("--no-write", action="store_true", help="print, do not rewrite BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.starvation_only:
        args.no_write = True
    seconds = 0.0 if args.starvation_only else 40.0 if args.quick else args.minutes * 60
    n_seq = 60 if args.quick else 300
    sample_every = 2.0 if args.quick else 10.0

    from mlpipe.data.mnist_source import load_mnist

    images = load_mnist()["test"].images[:2000]
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        state = Path(tmp)
        reg = open_registry(state / "registry", "mnist")
        reg.push(build_contract_model(state / "m1", seed=1))
        reg.push(build_contract_model(state / "m2", seed=2), promote=False)
        port = free_loopback_port()
        proc = _start_server(state, port, args.server_threads)
        try:
            singles = [json.dumps({"instances": [images[i].tolist()]}).encode() for i in range(n_seq)]
            _sequential(port, singles[:20])
            quiet = _sequential(port, singles)
            with SlowClients(port, args.slow) as slow:
                held = _sequential(port, singles)
                reopened = slow.reopened

            stats, stop = Stats(), threading.Event()
            rss: list[tuple[float, int, float]] = []
            workers = [threading.Thread(target=_traffic, args=(port, images, stats, stop, i), daemon=True)
                       for i in range(args.threads)]
            started = time.monotonic()
            rss.append((0.0, 0, _rss_mb(proc.pid)))
            with SlowClients(port, 10 if seconds else 0):
                for w in workers:
                    w.start()
                rss_at_1000 = None
                while time.monotonic() - started < seconds:
                    time.sleep(sample_every)
                    rss.append((time.monotonic() - started, stats.count, _rss_mb(proc.pid)))
                    if rss_at_1000 is None and stats.count >= 1000:
                        rss_at_1000 = rss[-1]
                stop.set()
                for w in workers:
                    w.join(timeout=120)
            rss.append((time.monotonic() - started, stats.count, _rss_mb(proc.pid)))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()

    def pct(v: list[float], q: float) -> str:
        return f"{np.percentile(v, q):.1f}" if v else "-"

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    q50, h50 = float(np.percentile(quiet, 50)), float(np.percentile(held, 50))
    rows = []
    for kind in sorted(set(stats.statuses) | set(stats.errors)):
        st = stats.statuses[kind]
        n2 = sum(c for s, c in st.items() if 200 <= s < 300)
        n4 = sum(c for s, c in st.items() if 400 <= s < 500)
        n5 = sum(c for s, c in st.items() if s >= 500)
        lat = stats.latencies[kind]
        rows.append(f"| {kind} | {sum(st.values()) + stats.errors[kind]} | {pct(lat, 50)} | {pct(lat, 99)} | "
                    f"{n2} | {n4} | {n5} | {stats.errors[kind]} |")
    total_5xx = sum(c for st in stats.statuses.values() for s, c in st.items() if s >= 500)
    total_err = sum(stats.errors.values())
    base = rss_at_1000 or rss[1 if len(rss) > 1 else 0]
    end = rss[-1]
    growth = 100 * (end[2] - base[2]) / base[2] if base[2] else 0.0
    timeline = ", ".join(f"{t:.0f}s/{n} req: {mb:.0f}" for t, n, mb in rss[:: max(1, -(-len(rss) // 12))])
    md = f"""## Soak: mixed traffic, slow clients, set-default flips (`bench/bench_soak.py`)

`mlpipe serve` (front.py: gunicorn gthread, 1 worker; prediction logging off) with two tiny contract
models on 127.0.0.1; {args.threads} client threads for {seconds / 60:.1f} min, one connection per request.

**Starvation check** ({n_seq} sequential one-instance predictions each): p50 {q50:.1f} ms / p99
{np.percentile(quiet, 99):.1f} ms with no slow clients; p50 {h50:.1f} ms / p99 {np.percentile(held, 99):.1f} ms
while {args.slow} slow clients hold sockets ({reopened} re-opened after the server dropped them):
ratio **{h50 / q50:.2f}×** (goal ≤ 2×).

**Soak** (10 slow clients throughout; {stats.count:,} requests):

| kind | n | p50 ms | p99 ms | 2xx | 4xx | 5xx | connection errors |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

5xx: **{total_5xx}**, connection errors: **{total_err}**. Server RSS (arbiter + worker), MB:
{base[2]:.0f} after {base[1]:,} requests → {end[2]:.0f} after {end[1]:,} (**{growth:+.1f} %**); max
{max(r[2] for r in rss):.0f}. Timeline: {timeline}.
Unexpected answers: {"; ".join(stats.unexpected) or "none"}. Load average at the end: {load}.
"""
    print(md)
    if not (args.no_write or args.quick):
        write_section("soak", md)
    return 0 if total_5xx == 0 and total_err == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
