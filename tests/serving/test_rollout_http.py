"""Gradual rollout over real HTTP: a canary challenger answers its share of the default's requests,
chosen by request id; a shadow challenger never answers but its predictions are logged."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mlpipe.bigquery.client import query_rows
from mlpipe.errors import NotFoundError
from mlpipe.registry import Rollout, registry_for
from tests.serving.server import start_server
from tests.serving.test_prediction_log import _wait_for

PREDICT = "/v1/projects/local-project/models/mnist:predict"
TF_PREDICT = "/v1/models/mnist:predict"
SHARE = 0.3


@pytest.fixture(scope="module")
def rollout_server(bq_settings, tmp_path_factory, fake_models):
    state = tmp_path_factory.mktemp("rollout-state")
    settings = bq_settings.replace(state_dir=state, log_predictions=True)
    reg = registry_for(settings)
    reg.push(fake_models[0])
    reg.push(fake_models[1], challenger=Rollout("", SHARE, "canary"))
    server = start_server(settings, state)
    yield server, reg
    server.stop()


def _without_ids(doc: dict) -> list[dict]:
    return [{k: v for k, v in p.items() if k != "predictionId"} for p in doc["predictions"]]


def _logged(settings, request_ids: list[str], expect: int,
            complete: Callable[[list[dict]], bool] | None = None) -> list[dict]:
    """Wait until the log holds `expect` rows for these requests (or `complete(rows)` holds): the log
    is written behind the answer, so rows arrive over time and in any order."""
    ids = ", ".join(f"'{r}'" for r in request_ids)
    sql = (f"SELECT request_id, version, role, prediction_id FROM `{settings.table_id('predictions')}` "
           f"WHERE request_id IN ({ids})")
    done = complete or (lambda found: len(found) >= expect)

    def rows():
        try:
            found = query_rows(settings, sql)
        except NotFoundError:
            return None
        return found if done(found) else None

    return _wait_for(rows, 60, f"{expect} logged rows")


@pytest.mark.e2e  # 2,000 requests to its own server with BigQuery logging
def test_canary_answers_its_share_chosen_by_request_id(rollout_server):
    server, reg = rollout_server
    rollout = reg.rollout()
    assert rollout == Rollout("v2", SHARE, "canary")
    answered: dict[str, str] = {}
    for i in range(2000):
        rid = f"canary-{i}"
        path = PREDICT if i % 2 else TF_PREDICT  # both dialects route the default the same way
        status, doc, headers = server.request("POST", path, {"instances": [[0.5] * 784]},
                                              headers={"X-Request-Id": rid}, timeout=60)
        assert status == 200, doc
        answered[rid] = headers["X-Model-Version"].split("/")[1]
        assert headers.get("X-Rollout") == ("canary" if answered[rid] == "v2" else None)
    share = sum(v == "v2" for v in answered.values()) / len(answered)
    assert abs(share - SHARE) <= 0.05, share
    # Deterministic: exactly the ids the hash assigns to the challenger, and the same id again
    # lands on the same version.
    assert all((v == "v2") == rollout.routes_to_challenger(rid) for rid, v in answered.items())
    rid = next(r for r, v in answered.items() if v == "v2")
    _, _, headers = server.request("POST", PREDICT, {"instances": [[0.5] * 784]},
                                   headers={"X-Request-Id": rid})
    assert headers["X-Model-Version"] == "mnist/v2"
    # Naming a version bypasses the rollout.
    for i in range(20):
        _, _, headers = server.request("POST", "/v1/projects/local-project/models/mnist/versions/v1:predict",
                                       {"instances": [[0.5] * 784]}, headers={"X-Request-Id": f"canary-{i}"})
        assert headers["X-Model-Version"] == "mnist/v1"
    # The log says which version answered each request and that the challenger's answers were canary.
    sample = [f"canary-{i}" for i in range(40, 80)]
    rows = _logged(server.settings, sample, len(sample))
    assert {(r["request_id"], r["version"], r["role"]) for r in rows} == {
        (rid, answered[rid], "canary" if answered[rid] == "v2" else "served") for rid in sample}


@pytest.mark.e2e
def test_shadow_answers_come_from_the_default_only(rollout_server):
    server, reg = rollout_server
    reg.set_challenger("v2", 1.0, "shadow", reason="test")
    body = {"instances": [[(i % 7) / 7] * 784 for i in range(3)]}
    _, expected, _ = server.request("POST", "/v1/projects/local-project/models/mnist/versions/v1:predict", body)
    rids = [f"shadow-{i}" for i in range(20)]
    for rid in rids:
        status, doc, headers = server.request("POST", PREDICT, body, headers={"X-Request-Id": rid})
        assert status == 200 and headers["X-Model-Version"] == "mnist/v1" and "X-Rollout" not in headers
        # The default's answer (prediction ids are new for every request).
        assert _without_ids(doc) == _without_ids(expected)
    # Served rows for every request; shadow copies are best effort (skipped while the shadow runner
    # is busy), so wait for all served rows and at least one request's shadow copy. Counting rows of
    # either role would stop early when shadow rows overtake served ones (CI saw 33 served + 30 shadow).
    def complete(found: list[dict]) -> bool:
        roles = [r["role"] for r in found]
        return roles.count("served") >= 3 * len(rids) and "shadow" in roles

    rows = _logged(server.settings, rids, 3 * len(rids) + 3, complete)
    served = [r for r in rows if r["role"] == "served"]
    shadow = [r for r in rows if r["role"] == "shadow"]
    assert len(served) == 3 * len(rids) and {r["version"] for r in served} == {"v1"}
    assert shadow and {r["version"] for r in shadow} == {"v2"}
    # A shadow row carries the prediction id of the default's answer to the same request, so a label
    # for that answer also grades the challenger.
    served_ids = {(r["request_id"], r["prediction_id"]) for r in served}
    assert {(r["request_id"], r["prediction_id"]) for r in shadow} <= served_ids
