"""Every page and action of the console over a real ML Metadata store and registry (the sample state),
with BigQuery down (nothing listens on the test's ports): each answers a page, never a traceback."""

from __future__ import annotations

import os

import pytest

from mlpipe.console.app import create_app
from mlpipe.registry import registry_for
from tests.conftest import make_settings
from tests.console.conftest import token

BQ_DOWN = "BigQuery is not reachable"


def _html(response) -> str:
    text = response.get_data(as_text=True)
    assert "Traceback" not in text
    return text


def pages(sample) -> list[str]:
    first, failed = sample.run_ids[0], sample.run_ids[6]
    return ["/", "/runs", f"/runs/{first}", f"/runs/{failed}", f"/runs/compare?a={first}&b={sample.run_ids[1]}",
            "/models", "/models/v1", "/models/v1/confirm?action=default",
            "/models/v1/confirm?action=alias&alias=champion", "/models/v3/confirm?action=delete",
            "/lineage/v1", "/data", "/data/tables/train", f"/data/runs/{first}", "/serving", "/try",
            f"/artifacts/{sample.model_ids[0]}", "/executions/1", "/healthz"]


def test_every_page_answers_200_with_its_content(client, sample):
    for url in pages(sample):
        r = client.get(url)
        assert r.status_code == 200, (url, r.status_code, r.get_data(as_text=True)[-400:])
        _html(r)
    assert "pushed v1" in _html(client.get("/runs"))
    assert "failed at ExampleValidator" in _html(client.get(f"/runs/{sample.run_ids[6]}"))
    version = _html(client.get("/models/v2"))
    assert "Confusion matrix" in version and "<svg" in version and "class_ids" in version
    assert "<td>image</td><td>DT_FLOAT</td><td>[-1, 784]</td>" in version
    assert client.get("/lineage").headers["Location"].endswith("/lineage/v3")
    lineage = _html(client.get("/lineage/v1"))
    for node in ("BigQueryExampleGen", "Trainer", "Pusher", "/data/tables/local-project.mnist.train"):
        assert node in lineage


def test_bigquery_down_gives_a_message_not_an_error(client):
    for url in ("/", "/data", "/serving", "/data/tables/train"):
        r = client.get(url)
        assert r.status_code == 200, url
        assert BQ_DOWN in _html(r), url


@pytest.mark.parametrize("url, status", [
    ("/models/v99", 404), ("/models/no.such", 400), ("/models/9bad", 400), ("/runs/nope", 404),
    ("/artifacts/99999", 404), ("/executions/99999", 404), ("/lineage/v99", 404), ("/data/runs/nope", 404),
    ("/models/v1/plots/search_report.json", 404), ("/models/v1/confirm?action=explode", 400),
    ("/models/v1/confirm?action=alias&alias=bad-name", 400), ("/data/tables/other.train", 404),
    ("/no/such/page", 404),
])
def test_bad_ids_are_a_page_with_the_reason(client, url, status):
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code)
    assert 'data-testid="error"' in _html(r)


def test_artifact_files_are_served_only_from_under_the_artifact_uri(client, sample, tmp_path, request):
    from mlpipe.metadata.graph import MetadataGraph

    graph = MetadataGraph.open(sample.settings.metadata_path, sample.settings.pipeline_name)
    model_run = next(a for a in graph.artifacts(range(1, 40)) if a.type == "ModelRun")
    ok = client.get(f"/artifacts/{model_run.id}/files/training_summary.json")
    assert ok.status_code == 200 and b"global_step" in ok.data
    secret = tmp_path / "secret.txt"
    secret.write_text("not an artifact")
    link = os.path.join(model_run.uri, "link.txt")
    os.symlink(secret, link)
    request.addfinalizer(lambda: os.unlink(link))
    rel = os.path.relpath(secret, model_run.uri)
    for path in (rel, "link.txt", "../" * 12 + secret.as_posix().lstrip("/"), "..%2F..%2F" + secret.name,
                 str(secret)):
        r = client.get(f"/artifacts/{model_run.id}/files/{path}", follow_redirects=True)
        assert r.status_code == 404, path
        assert b"not an artifact" not in r.data


def test_actions_need_the_csrf_token(fresh_client):
    client = fresh_client
    registry = registry_for(client.application.extensions["mlpipe_console"].settings)
    assert registry.default_version() == "v3"
    for form in ({}, {"csrf_token": "wrong"}):
        r = client.post("/models/v1/default", data=form)
        assert r.status_code == 403
        assert "CSRF" in _html(r)
    assert registry.default_version() == "v3"
    r = client.post("/models/v1/default", data={"csrf_token": token(client)})
    assert r.status_code == 303
    assert registry.default_version() == "v1"
    assert "v1 is now the default version" in _html(client.get(r.headers["Location"]))


def test_actions_follow_the_registry_rules(fresh_client):
    client = fresh_client
    registry = registry_for(client.application.extensions["mlpipe_console"].settings)
    t = {"csrf_token": token(client)}
    r = client.post("/models/v3/delete", data=t)
    assert r.status_code == 409 and "default version" in _html(r)
    assert client.post("/models/v2/alias", data={**t, "alias": "champion"}).status_code == 303
    assert registry.aliases() == {"champion": "v2"}
    r = client.post("/models/v2/delete", data=t)
    assert r.status_code == 409 and "alias" in _html(r)
    assert client.post("/models/v1/alias", data={**t, "alias": "champion"}).status_code == 303
    assert registry.aliases() == {"champion": "v1"}  # moved
    assert client.post("/models/v1/alias", data={**t, "alias": "bad name"}).status_code == 400
    assert client.post("/models/v1/remove-alias", data={**t, "alias": "champion"}).status_code == 303
    assert registry.aliases() == {}
    r = client.post("/models/v2/delete", data=t)
    assert r.status_code == 303 and "v2 was deleted" in _html(client.get(r.headers["Location"]))
    assert [v.name for v in registry.list_versions()] == ["v1", "v3"]
    assert client.post("/models/v2/default", data=t).status_code == 404
    assert client.post("/models/v1/explode", data=t).status_code == 404


def test_empty_state_explains_what_to_do(tmp_path):
    client = create_app(make_settings(tmp_path / "empty")).test_client()
    for url, words in (("/", "mlpipe run"), ("/runs", "mlpipe run"), ("/models", "No versions yet"),
                       ("/try", "No model version"), ("/data", BQ_DOWN), ("/serving", BQ_DOWN)):
        r = client.get(url)
        assert r.status_code == 200, url
        assert words in _html(r), url
    r = client.get("/lineage")
    assert r.status_code == 404 and "no default version" in _html(r)


def test_try_predict_calls_the_serving_app(client):
    pixels = [0] * 784
    r = client.post("/try/predict", json={"pixels": pixels})
    assert r.status_code == 403 and "CSRF" in r.get_json()["error"]
    headers = {"X-CSRF-Token": token(client)}
    r = client.post("/try/predict", json={"pixels": pixels[:10]}, headers=headers)
    assert r.status_code == 400 and "784" in r.get_json()["error"]
    r = client.post("/try/predict", json={"pixels": pixels, "target": "version:v99"}, headers=headers)
    assert r.status_code == 404
    r = client.post("/try/predict", json={"pixels": [255] * 784, "target": "version:v2"}, headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    doc = r.get_json()
    assert doc["served_by"] == "mnist/v2"
    assert len(doc["predictions"][0]["probabilities"]) == 10


def test_models_page_shows_the_rollout_and_the_audit_log(fresh_client):
    reg = registry_for(fresh_client.application.extensions["mlpipe_console"].settings)
    reg.set_challenger("v2", 0.25, reason="try the retrain")
    page = _html(fresh_client.get("/models"))
    assert 'data-testid="rollout"' in page and "canary, 25 % of the default" in page
    assert "<td>challenger</td><td>v2</td>" in page and "try the retrain" in page
    assert "challenger" in _html(fresh_client.get("/")) and "25 % of default traffic" in _html(fresh_client.get("/"))
    reg.promote(actor="alice@host", reason="online accuracy +2 pt")
    page = _html(fresh_client.get("/models"))
    assert 'data-testid="rollout"' not in page
    assert "<td>promote</td><td>v2</td>" in page and "alice@host" in page and "online accuracy +2 pt" in page
