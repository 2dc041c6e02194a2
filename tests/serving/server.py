"""Start `mlpipe serve` as a real subprocess (functions-framework + gunicorn) on a free loopback port."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpipe.config import REPO_ROOT, Settings
from tests.conftest import free_port

START_TIMEOUT_S = 90.0


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    settings: Settings

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 60.0):
        """(status, parsed JSON or None, headers). http.client sends `path` exactly as given."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers or {})
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        return resp.status, (json.loads(payload) if payload else None), resp.headers

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cli_flags(settings: Settings) -> list[str]:
    return [
        "--state-dir", str(settings.state_dir), "--registry-root", settings.registry_location,
        "--project", settings.project, "--dataset", settings.dataset,
        "--bq-port", str(settings.bq_port), "--bq-grpc-port", str(settings.bq_grpc_port),
    ]  # fmt: skip


def start_server(settings: Settings, log_dir: Path) -> Server:
    """`mlpipe serve` with `settings` (as CLI flags), ready when the status route answers."""
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    cmd = [sys.executable, "-m", "mlpipe.cli", "serve", "--port", str(port), *cli_flags(settings)]
    if not settings.log_predictions:
        cmd.append("--no-log-predictions")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPIPE_")}
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    server = Server(f"http://127.0.0.1:{port}", port, proc, log_path, settings)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()[-3000:]}")
        try:
            status, _, _ = server.request("GET", f"/v1/models/{settings.model_name}", timeout=2)
        except OSError:
            status = None
        if status in (200, 404):
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server did not answer within {START_TIMEOUT_S}s:\n{server.log()[-3000:]}")
