"""Every route of the serving function, over HTTP to a real functions-framework server."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import numpy as np
from PIL import Image

from mlpipe.config import REPO_ROOT
from tests.serving.server import cli_flags

ML = "/v1/projects/local-project/models"


def _predict(served, path, images, **kw):
    instances = [{"image": img.tolist()} for img in images]
    return served.request("POST", path, {"instances": instances}, **kw)


def test_predict_default_version_matches_in_process_model(served, mnist_images, in_process):
    batch = mnist_images[:100]
    status, doc, headers = _predict(served, f"{ML}/mnist:predict", batch)
    assert status == 200 and headers["X-Model-Version"] == "mnist/v1"
    expected = in_process("v1", batch.astype(np.float32))
    preds = doc["predictions"]
    assert len(preds) == 100 and set(preds[0]) == {"class_ids", "probabilities", "logits", "predictionId"}
    ids = [p["predictionId"] for p in preds]
    assert len(set(ids)) == 100  # one id per served instance
    np.testing.assert_array_equal([p["class_ids"] for p in preds], expected["class_ids"])
    np.testing.assert_allclose([p["probabilities"] for p in preds], expected["probabilities"], rtol=1e-6)
    np.testing.assert_allclose([p["logits"] for p in preds], expected["logits"], rtol=1e-6, atol=1e-6)


def test_predict_named_version_and_tf_serving_routes(served, mnist_images, in_process):
    batch = mnist_images[100:110]
    want_v2 = in_process("v2", batch.astype(np.float32))["class_ids"].ravel().tolist()
    want_v1 = in_process("v1", batch.astype(np.float32))["class_ids"].ravel().tolist()
    assert want_v1 != want_v2, "the two fake models should disagree somewhere"
    for path, version, want in (
        (f"{ML}/mnist/versions/v2:predict", "v2", want_v2),
        ("/v1/models/mnist:predict", "v1", want_v1),
        ("/v1/models/mnist/versions/2:predict", "v2", want_v2),
        ("/v1/models/mnist/labels/champion:predict", "v2", want_v2),
    ):
        status, doc, headers = _predict(served, path, batch)
        assert status == 200, doc
        assert headers["X-Model-Version"] == f"mnist/{version}"
        assert [p["class_ids"][0] for p in doc["predictions"]] == want


def test_instance_forms_agree(served, mnist_images):
    img = mnist_images[0]
    buf = io.BytesIO()
    Image.fromarray(img.reshape(28, 28)).save(buf, format="PNG")
    b64 = base64.b64encode(buf.getvalue()).decode()
    instances = [
        {"image": img.tolist()},
        img.tolist(),
        {"image": img.reshape(28, 28).tolist()},
        {"image": img.reshape(28, 28, 1).tolist()},
        {"image": img.astype(float).tolist()},
        {"image_bytes": {"b64": b64}},
    ]
    status, doc, _ = served.request("POST", f"{ML}/mnist:predict", {"instances": instances})
    assert status == 200, doc
    answers = [{k: v for k, v in p.items() if k != "predictionId"} for p in doc["predictions"]]
    assert all(a == answers[0] for a in answers)


def test_model_and_version_resources(served):
    status, model, _ = served.request("GET", f"{ML}/mnist")
    assert status == 200
    assert model["name"] == "projects/local-project/models/mnist"
    default = model["defaultVersion"]
    assert default["name"] == "projects/local-project/models/mnist/versions/v1"
    assert default["isDefault"] is True and default["state"] == "READY"
    assert default["framework"] == "TENSORFLOW" and default["runtimeVersion"] == "2.15"
    assert default["deploymentUri"].startswith("file:///") and default["createTime"].endswith("Z")
    assert default["labels"] == {"pipeline_run_id": "run-a", "model_artifact_id": "7",
                                 "blessing_artifact_id": "8"}
    assert "test accuracy 0.9100" in default["description"]
    assert default["mlpipeMetadata"]["source_tables"] == ["local-project.mnist.train"]

    status, listing, _ = served.request("GET", f"{ML}/mnist/versions")
    assert status == 200
    assert [v["name"].rsplit("/", 1)[1] for v in listing["versions"]] == ["v1", "v2"]
    assert [v["isDefault"] for v in listing["versions"]] == [True, False]
    status, page, _ = served.request("GET", f"{ML}/mnist/versions?pageSize=1")
    assert len(page["versions"]) == 1 and page["nextPageToken"] == "1"
    status, page, _ = served.request("GET", f"{ML}/mnist/versions?pageSize=1&pageToken=1")
    assert page["versions"][0]["name"].endswith("/v2") and "nextPageToken" not in page

    status, v2, _ = served.request("GET", f"{ML}/mnist/versions/v2")
    assert status == 200 and v2["isDefault"] is False and v2["labels"]["alias_champion"] == "true"
    status, models, _ = served.request("GET", ML)
    assert status == 200 and [m["name"] for m in models["models"]] == ["projects/local-project/models/mnist"]


def test_tf_serving_status_and_metadata(served):
    status, doc, _ = served.request("GET", "/v1/models/mnist")
    assert status == 200
    assert doc == {"model_version_status": [
        {"version": v, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        for v in ("1", "2")
    ]}
    status, doc, _ = served.request("GET", "/v1/models/mnist/labels/champion")
    assert [s["version"] for s in doc["model_version_status"]] == ["2"]
    status, doc, _ = served.request("GET", "/v1/models/mnist/versions/1")
    assert [s["version"] for s in doc["model_version_status"]] == ["1"]
    status, meta, _ = served.request("GET", "/v1/models/mnist/metadata")
    assert status == 200 and meta["model_spec"] == {"name": "mnist", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["image"]["dtype"] == "DT_FLOAT"
    assert set(sig["outputs"]) == {"class_ids", "probabilities", "logits"}
    status, meta, _ = served.request("GET", "/v1/models/mnist/labels/champion/metadata")
    assert meta["model_spec"]["version"] == "2"


def _cli(served, *argv):
    return subprocess.run([sys.executable, "-m", "mlpipe.cli", *argv, *cli_flags(served.settings)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def test_default_switch_by_another_process_needs_no_restart(served, mnist_images, in_process):
    batch = mnist_images[:20]
    want_v2 = in_process("v2", batch.astype(np.float32))["class_ids"].ravel().tolist()
    assert _cli(served, "models", "set-default", "v2").returncode == 0
    try:
        status, doc, headers = _predict(served, f"{ML}/mnist:predict", batch)
        assert headers["X-Model-Version"] == "mnist/v2"
        assert [p["class_ids"][0] for p in doc["predictions"]] == want_v2
        assert served.request("GET", f"{ML}/mnist")[1]["defaultVersion"]["name"].endswith("/v2")
    finally:
        assert _cli(served, "models", "set-default", "v1").returncode == 0
    assert _predict(served, f"{ML}/mnist:predict", batch)[2]["X-Model-Version"] == "mnist/v1"


def test_set_default_and_delete_over_http(served, fake_models):
    from mlpipe.registry import registry_for

    reg = registry_for(served.settings)
    v3 = reg.push(fake_models[0], promote=False).name
    status, doc, _ = served.request("POST", f"{ML}/mnist/versions/{v3}:setDefault", {})
    assert status == 200 and doc["isDefault"] is True and reg.default_version() == v3
    status, doc, _ = served.request("DELETE", f"{ML}/mnist/versions/{v3}")
    assert status == 400 and "default version" in doc["error"]
    status, doc, _ = served.request("POST", f"{ML}/mnist/versions/v1:setDefault", {})
    assert status == 200 and reg.default_version() == "v1"
    status, doc, _ = served.request("DELETE", f"{ML}/mnist/versions/{v3}")
    assert status == 200 and doc["done"] is True and doc["metadata"]["operationType"] == "DELETE_VERSION"
    assert [v.name for v in reg.list_versions()] == ["v1", "v2"]
    assert served.request("GET", f"{ML}/mnist/versions/{v3}")[0] == 404
    status, doc, _ = served.request("DELETE", f"{ML}/mnist/versions/v2")
    assert status == 400 and "alias" in doc["error"]


def test_request_id_is_echoed(served):
    status, _, headers = served.request("GET", "/v1/models/mnist", headers={"X-Request-Id": "abc-123"})
    assert status == 200 and headers["X-Request-Id"] == "abc-123"
    _, _, headers = served.request("GET", "/v1/models/mnist", headers={"X-Request-Id": "not/allowed"})
    assert len(headers["X-Request-Id"]) == 32


def test_a_broken_registered_model_is_a_503_with_a_reason(served, fake_models):
    """Only a server-side fault (a corrupt SavedModel in the registry) may answer 5xx."""
    from mlpipe.registry import registry_for

    reg = registry_for(served.settings)
    broken = reg.push(fake_models[0], promote=False)
    (broken.saved_model_dir / "saved_model.pb").write_bytes(b"corrupted on disk")
    try:
        for _ in range(2):  # the second answer comes from the remembered failure, not a reload
            status, doc, headers = _predict(served, f"{ML}/mnist/versions/{broken.name}:predict",
                                            np.zeros((1, 784), np.uint8))
            assert status == 503 and headers["Content-Type"] == "application/json"
            assert doc == {"error": f"version {broken.name} of model 'mnist' failed to load: OSError"}
        assert _predict(served, f"{ML}/mnist:predict", np.zeros((1, 784), np.uint8))[0] == 200
    finally:
        reg.delete(broken.name)
