"""Start a function bundle (`mlpipe function-bundle`'s output) in the real functions-framework server
(`functions-framework --source OUT/main.py --target predict_http`), as Cloud Functions runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from mlpipe.cloud.function_bundle import Bundle, write_bundle
from mlpipe.config import Settings
from mlpipe.serving.server import TARGET
from tests.conftest import free_port
from tests.serving.server import Server

START_TIMEOUT_S = 120.0


def start_bundle_server(base: Path, settings: Settings) -> tuple[Server, Bundle]:
    """Write the bundle for `settings` (its registry root) to `base/bundle` and start it; not waited for."""
    bundle = write_bundle(base / "bundle", settings)
    # The deployed function's environment: exactly env.yaml (what --env-vars-file sets), no MLPIPE_*
    # of this process, and a working directory outside the repository.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(yaml.safe_load((bundle.path / "env.yaml").read_text()))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    port = free_port()
    framework = os.path.join(os.path.dirname(sys.executable), "functions-framework")
    cmd = [framework, "--source", str(bundle.path / "main.py"), "--target", TARGET,
           "--host", "127.0.0.1", "--port", str(port)]
    log_path = base / "server.log"
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=base, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    return Server(f"http://127.0.0.1:{port}", port, proc, log_path, settings), bundle


def wait_ready(server: Server, model: str = "mnist") -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"function exited with {server.proc.returncode}:\n{server.log()[-3000:]}")
        try:
            status, _, _ = server.request("GET", f"/v1/models/{model}", timeout=5)
        except OSError:
            status = None
        if status == 200:
            return
        time.sleep(0.3)
    raise RuntimeError(f"function did not answer within {START_TIMEOUT_S}s:\n{server.log()[-3000:]}")
