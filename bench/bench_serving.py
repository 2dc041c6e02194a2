"""Serving benchmark: latency and throughput over HTTP vs. the SavedModel in process, cold start.

Registers a SavedModel (`--model-dir`; default: the tiny contract model of mlpipe.registry.signature_check)
into a temporary registry, runs `mlpipe serve` on a free loopback port (functions-framework +
gunicorn, prediction logging off), and measures with real MNIST test images:
- cold start: process start → first successful prediction (TensorFlow import and model load included);
- p50/p99 latency of one-instance requests (sequential, one keep-alive connection);
- images/s for 100-image requests over HTTP vs. calling the signature in process, and their ratio.
HTTP and in-process calls are INTERLEAVED (the server is up and the model is loaded in this process
throughout; each pair alternates which goes first), so both see the same machine load.
Request bodies are JSON-encoded before the clock starts, so the client's encoding is not counted.

    .venv/bin/python bench/bench_serving.py [--model-dir DIR --model-label TEXT] [--requests 500] [--batches 40]
    .venv/bin/python bench/bench_serving.py --quick   # 50 requests, 5 batches, to BENCHMARKS.quick.md
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import load_average, write_section  # noqa: E402
from mlpipe.data.mnist_source import load_mnist  # noqa: E402
from mlpipe.procutil import free_loopback_port  # noqa: E402
from mlpipe.registry import open_registry  # noqa: E402
from mlpipe.registry.signature_check import build_contract_model  # noqa: E402

PREDICT = "/v1/projects/local-project/models/mnist:predict"


def _body(images: np.ndarray) -> bytes:
    return json.dumps({"instances": [{"image": img.tolist()} for img in images]}).encode()


def _post(conn: http.client.HTTPConnection, body: bytes) -> dict:
    conn.request("POST", PREDICT, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    payload = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"prediction failed: {resp.status} {payload[:200]!r}")
    return json.loads(payload)


def _start_server(state: Path, port: int, python: str = sys.executable, cwd: Path = ROOT,
                  env: dict[str, str] | None = None) -> tuple[subprocess.Popen, float]:
    """Start `mlpipe serve` (of the checkout at `cwd`, run by `python`) on the registry in `state`;
    returns the process and seconds until the first prediction succeeded."""
    cmd = [python, "-m", "mlpipe.cli", "serve", "--port", str(port), "--no-log-predictions",
           "--state-dir", str(state)]
    env = env if env is not None else {k: v for k, v in os.environ.items() if not k.startswith("MLPIPE_")}
    body = _body(np.zeros((1, 784), np.uint8))
    log = state / "bench-server.log"
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    while time.perf_counter() - started < 180:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            _post(conn, body)
            conn.close()
            return proc, time.perf_counter() - started
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not answer within 180 s")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def measure(conn: http.client.HTTPConnection, in_process, images: np.ndarray, requests: int,
            batches: int) -> dict[str, float]:
    """p50/p99 of one-instance requests and images/s of 100-image requests, over HTTP (`conn`) and
    in process (`in_process(pixels)`), interleaved: each pair alternates which goes first."""
    singles = [(images[i : i + 1], _body(images[i : i + 1])) for i in range(requests)]
    for pixels, body in singles[:20]:  # warm-up: first calls trace and allocate, both ways
        _post(conn, body)
        in_process(pixels)
    latencies, single_inproc = [], []
    for i, (pixels, body) in enumerate(singles):
        pair = [(latencies, lambda body=body: _post(conn, body)),
                (single_inproc, lambda pixels=pixels: in_process(pixels))]
        for times, call in (pair if i % 2 == 0 else pair[::-1]):
            t = time.perf_counter()
            call()
            times.append((time.perf_counter() - t) * 1000)
    chunks = [images[(i * 100) % 9900 : (i * 100) % 9900 + 100] for i in range(batches)]
    bodies = [_body(b) for b in chunks]
    _post(conn, bodies[0])
    in_process(chunks[0])
    http_s = inproc_s = 0.0
    for i, (batch, body) in enumerate(zip(chunks, bodies, strict=True)):
        t = time.perf_counter()
        if i % 2 == 0:
            _post(conn, body)
            t_mid = time.perf_counter()
            in_process(batch)
            http_s += t_mid - t
            inproc_s += time.perf_counter() - t_mid
        else:
            in_process(batch)
            t_mid = time.perf_counter()
            _post(conn, body)
            inproc_s += t_mid - t
            http_s += time.perf_counter() - t_mid
    return {"p50": _pct(latencies, 50), "p99": _pct(latencies, 99),
            "p50_in": _pct(single_inproc, 50), "p99_in": _pct(single_inproc, 99),
            "http_ips": 100 * len(chunks) / http_s, "inproc_ips": 100 * len(chunks) / inproc_s,
            "batch_body_bytes": len(bodies[0])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="SavedModel with the serving contract (default: build "
                        "the tiny contract model)")
    parser.add_argument("--model-label", help="how the section names the model (default: its path)")
    parser.add_argument("--requests", type=int, default=500, help="one-instance requests for p50/p99")
    parser.add_argument("--batches", type=int, default=40, help="100-image requests for throughput")
    parser.add_argument("--quick", action="store_true",
                        help="50 requests, 5 batches, written to BENCHMARKS.quick.md")
    parser.add_argument("--no-write", action="store_true", help="print, do not rewrite BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.batches = 50, 5

    images = load_mnist()["test"].images
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        state = Path(tmp)
        model_dir = args.model_dir
        model_label = args.model_label or (str(model_dir) if model_dir else "tiny contract model (one dense layer)")
        if model_dir is None:
            model_dir = build_contract_model(state / "contract_model", seed=1)
        open_registry(state / "registry", "mnist").push(model_dir)

        import tensorflow as tf

        fn = tf.saved_model.load(str(model_dir)).signatures["serving_default"]

        def in_process(batch: np.ndarray) -> None:
            fn(image=tf.constant(batch, tf.float32))

        port = free_loopback_port()
        proc, cold_start = _start_server(state, port)
        load_start = load_average()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            m = measure(conn, in_process, images, args.requests, args.batches)
            conn.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)

    p50, p99, p50_in, p99_in = m["p50"], m["p99"], m["p50_in"], m["p99_in"]
    http_ips, inproc_ips = m["http_ips"], m["inproc_ips"]
    load_end = load_average()
    body_kb = m["batch_body_bytes"] / 1000
    md = f"""## Serving: HTTP function vs. in-process SavedModel (`bench/bench_serving.py`)

Model: {model_label}. `mlpipe serve` (functions-framework 3 on gunicorn, 1 worker, threads;
prediction logging off) on 127.0.0.1, one keep-alive client connection; bodies JSON-encoded before
timing; real MNIST test images. HTTP and in-process calls interleaved (alternating which goes first),
so both columns were measured under the same load.

| measurement | HTTP | in process | ratio |
|---|---|---|---|
| latency, 1 instance: p50 | {p50:.2f} ms | {p50_in:.2f} ms | {p50 / p50_in:.1f}× |
| latency, 1 instance: p99 | {p99:.2f} ms | {p99_in:.2f} ms | {p99 / p99_in:.1f}× |
| throughput, 100-image requests | {http_ips:,.0f} images/s | {inproc_ips:,.0f} images/s | \
HTTP/in-process {http_ips / inproc_ips:.2f} |
| cold start: process start → first prediction | {cold_start:.1f} s | | |

n = {args.requests} single-instance requests, {args.batches} batches of 100, each way. Load average
(1/5/15 min) when measuring started: {load_start}; at the end: {load_end}. A 100-image request body is
{body_kb:.0f} KB of JSON; for a tiny model decoding and validating it dominates, for the real AdaNet
ensemble the model itself does.
"""
    print(md)
    if not args.no_write:
        write_section("serving", md, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
