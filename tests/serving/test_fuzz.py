"""10,000 mixed valid and invalid requests from 4 client threads: no 5xx, every error is JSON."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter

import pytest

REQUESTS = 10_000
THREADS = 4
ML = "/v1/projects/local-project/models"
PREDICT_PATHS = [f"{ML}/mnist:predict", f"{ML}/mnist/versions/v1:predict", f"{ML}/mnist/versions/v2:predict",
                 "/v1/models/mnist:predict", "/v1/models/mnist/versions/2:predict",
                 "/v1/models/mnist/labels/champion:predict"]
READ_PATHS = [ML, f"{ML}/mnist", f"{ML}/mnist/versions", f"{ML}/mnist/versions/v2", "/v1/models/mnist",
              "/v1/models/mnist/metadata", "/v1/models/mnist/labels/champion"]
JUNK_SEGMENTS = ["..", "%2e%2e", "%2F", "v0", "v99", "a-b", "%00", "%C3%A9", "x" * 300, ":predict",
                 "mnist:predict:predict", "%252e", "~", "models", "versions", "labels", "%5c", "*", ""]
JUNK_VALUES = ["7", None, True, -1, 256, 1e309, 10**30, [], {}, [[1]], -0.5, "NaN", {"b64": "x"}]


def _valid_body(rng: random.Random) -> bytes:
    n = rng.randint(1, 4)
    instances = []
    for _ in range(n):
        pixels = [rng.randint(0, 255) for _ in range(784)]
        form = rng.random()
        if form < 0.4:
            instances.append({"image": pixels})
        elif form < 0.7:
            instances.append(pixels)
        else:
            instances.append({"image": [pixels[r * 28:(r + 1) * 28] for r in range(28)]})
    return json.dumps({"instances": instances}).encode()


def _invalid_body(rng: random.Random) -> bytes:
    base = _valid_body(rng)
    kind = rng.randrange(8)
    if kind == 0:
        return base[: rng.randrange(len(base))]  # truncated JSON
    if kind == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))  # random bytes
    if kind == 2:
        doc = json.loads(base)
        first = doc["instances"][0]
        pixels = first["image"] if isinstance(first, dict) else first
        flat = pixels if isinstance(pixels[0], int) else pixels[rng.randrange(len(pixels))]
        flat[rng.randrange(len(flat))] = rng.choice(JUNK_VALUES)
        return json.dumps(doc).encode()
    if kind == 3:
        doc = json.loads(base)
        doc["instances"][0] = [rng.randint(0, 255) for _ in range(rng.randrange(784))]  # wrong length
        return json.dumps(doc).encode()
    if kind == 4:
        return json.dumps(rng.choice([{}, [], "x", 1, {"instances": None}, {"instances": []},
                                      {"instances": [[]]}, {"instances": [{}]}])).encode()
    if kind == 5:
        return b"[" * rng.randint(100, 5000) + b"]" * rng.randint(0, 5000)
    if kind == 6:
        return base.replace(b"1", b"NaN", 1) if b"1" in base else b"NaN"
    return base.replace(b'"image"', b'"image_bytes"', 1) if b'"image"' in base else b"{"


def _request(rng: random.Random, valid: list[bytes], invalid: list[bytes]) -> tuple[str, str, bytes | None, bool]:
    """(method, path, body, expected to succeed)."""
    roll = rng.random()
    if roll < 0.35:
        return "POST", rng.choice(PREDICT_PATHS), rng.choice(valid), True
    if roll < 0.65:
        return "POST", rng.choice(PREDICT_PATHS), rng.choice(invalid), False
    if roll < 0.75:
        return "GET", rng.choice(READ_PATHS), None, True
    if roll < 0.9:
        segments = [rng.choice(JUNK_SEGMENTS) for _ in range(rng.randint(1, 6))]
        prefix = rng.choice(["/v1/models/", f"{ML}/", f"{ML}/mnist/versions/", "/", "/v1/models/mnist/labels/"])
        method = rng.choice(["GET", "POST", "DELETE", "PUT"])
        return method, prefix + "/".join(segments), rng.choice(valid) if method == "POST" else None, False
    # Wrong methods on real routes; DELETE only where the registry must refuse it.
    method, path = rng.choice([("PUT", PREDICT_PATHS[0]), ("GET", PREDICT_PATHS[3]), ("PATCH", READ_PATHS[1]),
                               ("DELETE", f"{ML}/mnist/versions/v1"), ("DELETE", f"{ML}/mnist/versions/v2"),
                               ("DELETE", f"{ML}/mnist/versions/v77"), ("POST", READ_PATHS[4])])
    return method, path, None, False


@pytest.mark.e2e
def test_fuzz_and_load(served):
    results: Counter[int] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        try:
            send_all(seed)
        except Exception as e:  # a dying client thread must fail the test, not vanish
            with lock:
                failures.append(f"client {seed} crashed: {e!r}")

    def send_all(seed: int) -> None:
        rng = random.Random(seed)
        # Bodies drawn from pools made up front: generating 784 random pixels per request would
        # make the test measure the clients' CPU instead of the server (2 cores are shared).
        valid = [_valid_body(rng) for _ in range(50)]
        invalid = [_invalid_body(rng) for _ in range(400)]
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
        for _ in range(REQUESTS // THREADS):
            method, path, body, should_pass = _request(rng, valid, invalid)
            try:
                conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                payload = resp.read()
            except (http.client.HTTPException, OSError) as e:
                with lock:
                    failures.append(f"{method} {path[:80]}: connection error {e!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
                continue
            problem = None
            if resp.status >= 500:
                problem = f"{resp.status}"
            elif resp.status >= 400:
                try:
                    doc = json.loads(payload)
                    if not isinstance(doc, dict) or not isinstance(doc.get("error"), str):
                        problem = "error body without an 'error' string"
                except ValueError:
                    problem = f"non-JSON error body {payload[:80]!r}"
            elif not should_pass and method != "GET":
                problem = f"unexpected success {resp.status}"
            if should_pass and resp.status != 200:
                problem = f"valid request failed {resp.status} {payload[:120]!r}"
            with lock:
                results[resp.status] += 1
                if problem:
                    failures.append(f"{method} {path[:80]} body={str(body)[:60]}: {problem}")
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    print(f"{REQUESTS} requests in {elapsed:.1f}s ({REQUESTS / elapsed:.0f}/s): {dict(sorted(results.items()))}")
    assert failures == [], failures[:10]
    assert sum(results.values()) == REQUESTS
    assert results[200] > 3000 and results[400] > 2000 and results[404] > 100 and results[405] > 100
    assert not any(status >= 500 for status in results)
    # the fuzzing changed nothing: v1 is still the default, both versions and the alias remain
    status, model, _ = served.request("GET", f"{ML}/mnist")
    assert model["defaultVersion"]["name"].endswith("/v1")
    assert served.request("GET", "/v1/models/mnist/labels/champion")[0] == 200
    assert "unhandled" not in served.log()  # no catch-all (ours or the framework hook) fired
