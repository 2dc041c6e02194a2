"""`mlpipe serve`: run the serving function in the real functions-framework server (gunicorn, see
front.py for its settings)."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

from mlpipe.config import ENV_VARS, Settings
from mlpipe.errors import ServiceStateError, UsageError
from mlpipe.serving.guard import ENV_ALLOWED_HOSTS, ENV_TOKEN, LOOPBACK_NAMES, is_loopback, normalize_host

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("main.py")
TARGET = "predict_http"



def settings_environ(settings: Settings) -> dict[str, str]:
    """`settings` as the MLPIPE_* variables the function's `load_settings()` reads back."""
    env = {}
    for var, name in ENV_VARS.items():
        value = getattr(settings, name)
        if isinstance(value, bool):
            env[var] = "1" if value else "0"
        elif isinstance(value, Path):
            env[var] = str(value.absolute())
        else:
            env[var] = str(value)
    # An empty registry_root means "under the state dir"; pass the resolved location instead.
    env["MLPIPE_REGISTRY_ROOT"] = str(Path(settings.registry_location).absolute())
    return env


def server_command(host: str, port: int) -> list[str]:
    """functions-framework's app and gunicorn server, with the settings of `front.py`."""
    return [sys.executable, "-m", "mlpipe.serving.front", "--host", host, "--port", str(port)]


def server_environ(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(settings_environ(settings))
    # 64 threads would get up to 8 × cores glibc malloc arenas, and freed batch memory stays
    # scattered over them (RSS that only grows); two arenas keep it reusable.
    env.setdefault("MALLOC_ARENA_MAX", "2")
    return env


def edge_environ(host: str, token: str | None, allowed_hosts: tuple[str, ...] = ()) -> dict[str, str]:
    """The guard's configuration (see guard.py) for a server bound to `host`, as the MLPIPE_SERVE_*
    variables; refuses to expose write routes beyond loopback without a token."""
    if not is_loopback(host) and not token:
        raise UsageError(
            f"--host {host} makes the server reachable beyond this machine, where anyone could change "
            f"the registry; give a token (--token or {ENV_TOKEN}) that writes must send as "
            "`Authorization: Bearer TOKEN`, or bind to 127.0.0.1"
        )
    if token is not None and len(token) < 16:
        raise UsageError("the serving token must be at least 16 characters")
    names = [*LOOPBACK_NAMES, *allowed_hosts]
    if host not in ("0.0.0.0", "::", ""):
        names.append(host)
    env = {ENV_ALLOWED_HOSTS: ",".join(normalize_host(n) for n in names)}
    if token:
        env[ENV_TOKEN] = token
    return env


def serve(settings: Settings, host: str, port: int, allowed_hosts: tuple[str, ...] = ()) -> None:
    """Replace this process with the server (so signals and exit codes are the server's own)."""
    if not 0 < port < 65536:
        raise UsageError(f"--port must be 1-65535, not {port}")
    edge = edge_environ(host, settings.serve_token or None, allowed_hosts)
    if not is_loopback(host):
        log.warning("serving beyond loopback on %s:%d: writes need the token; Host must be one of %s",
                    host, port, edge[ENV_ALLOWED_HOSTS])
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            s.bind((host, port))
        except OSError as e:
            raise ServiceStateError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    log.info("serving %s (model %s, project %s) on http://%s:%d", settings.registry_location,
             settings.model_name, settings.project, host, port)
    cmd = server_command(host, port)
    os.execve(cmd[0], cmd, {**server_environ(settings), **edge})
