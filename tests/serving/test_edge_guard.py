"""Write routes are safe from web pages: cross-site Origin, simple-request body types and foreign Host
names are refused before anything is read or changed; a token is required when configured (and
`mlpipe serve` refuses to bind beyond loopback without one); every change over HTTP is logged."""

from __future__ import annotations

import logging
import subprocess
import sys

import flask
import pytest

from mlpipe.config import REPO_ROOT
from mlpipe.serving import app as app_module
from mlpipe.serving import routes
from mlpipe.serving.app import ServingApp
from mlpipe.serving.guard import MUTATING, EdgePolicy
from tests.conftest import free_port, make_settings

ML = "/v1/projects/local-project/models/mnist"
TOKEN = "s3cret-token-0123456789"


# ---- in process: the guard covers every mutating method of every route, present and future ---------

@pytest.fixture()
def serving(tmp_path, monkeypatch):
    """A ServingApp with one extra POST route (standing in for routes other issues add)."""
    calls = []

    def _extra(self, call, **params):
        calls.append(params)
        return app_module.Answer(200, {"ok": True})

    extra = routes.Route(routes.re.compile(r"/v1/extra/(?P<thing>[^/:]+):poke"),
                         {m: _extra for m in ("POST", "PUT", "PATCH", "DELETE")})
    monkeypatch.setattr(app_module, "ROUTES", (*app_module.ROUTES, extra))
    settings = make_settings(tmp_path, log_predictions=False)
    policy = EdgePolicy(token=TOKEN, allowed_hosts=frozenset({"127.0.0.1", "localhost"}))
    return ServingApp(settings, policy), calls


def _call(serving_app, method, path, headers, data=b"{}"):
    fl = flask.Flask("guard-test")
    with fl.test_request_context(path, method=method, headers=headers, data=data,
                                 base_url="http://127.0.0.1:8080"):
        return serving_app.handle(flask.request)


def _sample_paths():
    """One concrete path per (route, mutating method) of the real table, plus the extra route."""
    samples = {
        routes.ML_PREDICT: f"{ML}:predict", routes.ML_VERSION: f"{ML}/versions/v1",
        routes.ML_VERSION_PREDICT: f"{ML}/versions/v1:predict",
        routes.ML_SET_DEFAULT: f"{ML}/versions/v1:setDefault", routes.TF_PREDICT: "/v1/models/mnist:predict",
    }
    out = []
    for route in app_module.ROUTES:
        for method in route.methods:
            if method in MUTATING:
                out.append((method, samples.get(route.pattern, "/v1/extra/x:poke")))
    return out + [(m, "/v1/extra/x:poke") for m in ("POST", "PUT", "PATCH", "DELETE")]


GOOD = {"Host": "127.0.0.1:8080", "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
REFUSALS = [
    ({"Origin": "http://evil.example"}, 403, "cross-site"),
    ({"Origin": "null"}, 403, "cross-site"),
    ({"Origin": "http://127.0.0.1:9999"}, 403, "cross-site"),
    ({"Sec-Fetch-Site": "cross-site"}, 403, "cross-site"),
    ({"Content-Type": "text/plain"}, 415, "application/json"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"),
    ({"Content-Type": "multipart/form-data; boundary=x"}, 415, "application/json"),
    ({"Authorization": ""}, 401, "token"),
    ({"Authorization": "Bearer wrong-token-000000000"}, 401, "token"),
    ({"Host": "evil.example:8080"}, 403, "Host"),
]


@pytest.mark.parametrize("change, status, fragment", REFUSALS)
def test_every_mutating_route_refuses_cross_site_requests(serving, change, status, fragment):
    serving_app, calls = serving
    for method, path in _sample_paths():
        resp = _call(serving_app, method, path, {**GOOD, **change})
        assert resp.status_code == status, (method, path, resp.get_data())
        assert fragment in resp.get_json()["error"]
    assert calls == []  # the handler of the added route never ran


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_same_origin_with_token_passes_and_is_logged(serving):
    serving_app, calls = serving
    # A handler of its own on the logger: the CLI's quiet filter (installed on the root handlers by
    # in-process CLI tests) would hide INFO records from caplog.
    logger, handler = logging.getLogger("mlpipe.serving.app"), _Records()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        _poke_and_delete(serving_app)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    changes = [r.getMessage() for r in handler.records if r.getMessage().startswith("HTTP change")]
    assert len(changes) == 2 and calls == [{"thing": "x"}]
    assert "POST /v1/extra/x:poke by " in changes[0] and "'curl/8'" in changes[0] and "→ 200" in changes[0]
    assert "DELETE" in changes[1] and "evil.example" in changes[1] and "→ 403" in changes[1]


def _poke_and_delete(serving_app):
    resp = _call(serving_app, "POST", "/v1/extra/x:poke",
                 {**GOOD, "Origin": "http://127.0.0.1:8080", "User-Agent": "curl/8"})
    assert resp.status_code == 200
    # Not only successes: refused and failed changes are logged with their caller too.
    _call(serving_app, "DELETE", f"{ML}/versions/v1", {**GOOD, "Origin": "http://evil.example"})


def test_reads_need_no_token_but_a_known_host(serving):
    serving_app, _ = serving
    assert _call(serving_app, "GET", "/v1/models/mnist", {"Host": "localhost:8080"}).status_code == 404
    assert _call(serving_app, "GET", "/v1/models/mnist", {"Host": "rebound.evil.example"}).status_code == 403


# ---- over HTTP: the repro against the real server ------------------------------------------

def test_the_no_cors_set_default_repro_is_refused(served):
    from mlpipe.registry import registry_for

    reg = registry_for(served.settings)
    assert reg.default_version() == "v1"
    for headers in ({"Origin": "http://evil.example", "Content-Type": "text/plain"},
                    {"Content-Type": "text/plain"}, {"Origin": "http://evil.example"},
                    {"Host": "evil.example"}):
        status, doc, resp_headers = served.request("POST", f"{ML}/versions/v2:setDefault", raw=b"{}",
                                                   headers=headers)
        assert status in (403, 415) and resp_headers["Content-Type"] == "application/json", doc
        status, doc, _ = served.request("DELETE", f"{ML}/versions/v2", headers=headers)
        assert status in (403, 415), doc
    assert reg.default_version() == "v1" and "v2" in [v.name for v in reg.list_versions()]
    status, _, _ = served.request("GET", ML, headers={"Host": "evil.example"})
    assert status == 403
    # The server's own origin may write; the change is logged with its caller.
    origin = {"Origin": f"http://127.0.0.1:{served.port}", "Content-Type": "application/json"}
    try:
        assert served.request("POST", f"{ML}/versions/v2:setDefault", raw=b"{}", headers=origin)[0] == 200
        assert reg.default_version() == "v2"
    finally:
        assert served.request("POST", f"{ML}/versions/v1:setDefault", raw=b"{}")[0] == 200
    assert f"HTTP change POST {ML}/versions/v2:setDefault by 127.0.0.1:" in served.log()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_serving_beyond_loopback_without_a_token_is_refused(tmp_path, host):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "mlpipe.cli", "serve", "--host", host, "--port",
                           str(free_port()), "--state-dir", str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "--token" in proc.stderr and "Traceback" not in proc.stderr


def test_edge_environment_of_mlpipe_serve(monkeypatch):
    from mlpipe.errors import UsageError
    from mlpipe.serving.server import edge_environ

    monkeypatch.delenv("MLPIPE_SERVE_TOKEN", raising=False)
    env = edge_environ("127.0.0.1", None)
    assert "MLPIPE_SERVE_TOKEN" not in env and "localhost" in env["MLPIPE_SERVE_ALLOWED_HOSTS"]
    env = edge_environ("0.0.0.0", TOKEN, ("box.lan",))
    assert env["MLPIPE_SERVE_TOKEN"] == TOKEN
    from mlpipe.config import load_settings

    policy = EdgePolicy.from_settings(load_settings(environ=env))
    assert policy.allowed_hosts == {"localhost", "127.0.0.1", "::1", "box.lan"} and policy.token == TOKEN
    assert TOKEN not in repr(load_settings(environ=env))
    with pytest.raises(UsageError, match="16 characters"):
        edge_environ("0.0.0.0", "short")
