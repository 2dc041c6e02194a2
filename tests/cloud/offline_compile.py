"""Compile the pipeline for Vertex AI with every way out to the network closed, and record attempts.

    python -m tests.cloud.offline_compile OUT_DIR     (writes OUT_DIR/results.json)

Two guards, because not every client goes through Python's socket module:
- Python: `socket.connect`/`connect_ex`/`getaddrinfo` refuse (and record) any non-loopback address;
- everything else that honours the proxy variables (curl inside TensorFlow's GCS file system, gRPC
  core, requests): `*_proxy` point at a loopback listener that records each connection and drops it.
The driver compiles the defaults and every flag changed through the real CLI, builds the local pipeline for comparison,
then tries `--submit` without credentials (where network attempts are expected and not counted).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import sys
import threading
import traceback
from pathlib import Path

PROJECT = "offline-proj"
REGION = "europe-west4"
GCS_ROOT = "gs://offline-bucket/mnist"
IMAGE = "europe-west4-docker.pkg.dev/offline-proj/mlpipe/mnist-automl:test"
SERVICE_ACCOUNT = "pipelines@offline-proj.iam.gserviceaccount.com"
COMMON = ["--project", PROJECT, "--region", REGION, "--gcs-root", GCS_ROOT, "--image", IMAGE]
NETWORK = "mnist-vpc"
SUBNETWORK = f"regions/{REGION}/subnetworks/mnist-subnet"
# Every cloud flag away from its default.
CUSTOM = ["--profile", "quick", "--push-target", "registry", "--service-account", SERVICE_ACCOUNT,
          "--trainer-machine-type", "n1-standard-8", "--dataflow-machine-type", "n2-standard-2",
          "--dataflow-disk-size-gb", "80", "--dataflow-network", NETWORK, "--dataflow-subnetwork", SUBNETWORK,
          "--dataflow-max-workers", "2", "--keep-previous", "0"]


def _loopback(host: object) -> bool:
    return host in (None, "", "localhost", "::1") or str(host).startswith("127.")


class NetworkGuard:
    def __init__(self) -> None:
        self.attempts: list[str] = []
        self.proxy_connections = 0

    def install(self) -> None:
        guard = self
        real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
        real_getaddrinfo = socket.getaddrinfo

        def refuse(what: str) -> OSError:
            caller = traceback.extract_stack(limit=4)[0]
            guard.attempts.append(f"{what} from {caller.filename}:{caller.lineno}")
            return OSError(101, f"network disabled for this test: {what}")

        def connect(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
                raise refuse(f"connect {address}")
            return real_connect(sock, address)

        def connect_ex(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
                refuse(f"connect_ex {address}")
                return 101
            return real_connect_ex(sock, address)

        def getaddrinfo(host, *args, **kwargs):
            if not _loopback(host):
                guard.attempts.append(f"getaddrinfo {host!r}")
                raise socket.gaierror(socket.EAI_NONAME, "network disabled for this test")
            return real_getaddrinfo(host, *args, **kwargs)

        socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
        socket.getaddrinfo = getaddrinfo

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
        for var in ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy"):
            os.environ[var] = os.environ[var.upper()] = proxy
        os.environ.pop("no_proxy", None)
        os.environ.pop("NO_PROXY", None)

        def accept() -> None:
            while True:
                conn, _ = listener.accept()
                guard.proxy_connections += 1
                conn.close()

        threading.Thread(target=accept, daemon=True).start()

    def reset(self) -> dict[str, object]:
        seen = {"attempts": list(self.attempts), "proxy_connections": self.proxy_connections}
        self.attempts.clear()
        self.proxy_connections = 0
        return seen


def run_cli(argv: list[str]) -> dict[str, object]:
    from mlpipe.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}


def local_pipeline() -> dict[str, object]:
    """The local pipeline from the same create_pipeline(), as `mlpipe run` builds it (not run)."""
    from mlpipe.config import load_settings
    from pipeline.configs import PipelineConfig
    from pipeline.pipeline import create_pipeline

    pipeline = create_pipeline(PipelineConfig.for_profile(load_settings(environ={}, project=PROJECT)))
    schema_gen = next(c for c in pipeline.components if c.id == "ImportSchemaGen")
    return {
        "components": [c.id for c in pipeline.components],
        "pipeline_root": pipeline.pipeline_info.pipeline_root,
        "schema_file": schema_gen.exec_properties["schema_file"],
        "beam_args": list(pipeline.beam_pipeline_args),
    }


def main(out_dir: Path) -> None:
    guard = NetworkGuard()
    guard.install()
    results: dict[str, object] = {}
    results["default"] = run_cli(["compile-vertex", *COMMON, "--output", str(out_dir / "default.json")])
    results["custom"] = run_cli([
        "compile-vertex", *COMMON, *CUSTOM, "--output", str(out_dir / "custom.json"),
    ])  # fmt: skip
    results["local"] = local_pipeline()
    results["offline"] = guard.reset()
    results["submit"] = run_cli(["compile-vertex", *COMMON, "--output", str(out_dir / "submit.json"), "--submit"])
    results["submit_network"] = guard.reset()
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
