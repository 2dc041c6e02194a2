"""Google's own ml v1 client, built from Google's discovery document, talks to the local server.

Only the endpoint changes (`client_options`); no credentials (a plain httplib2.Http).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httplib2
import numpy as np
import pytest
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError

DISCOVERY = Path(sys.prefix) / "share" / "mlpipe" / "ml.v1.json"
NAME = "projects/local-project/models/mnist"


@pytest.fixture(scope="module")
def ml(served):
    if not DISCOVERY.exists():
        pytest.fail(f"{DISCOVERY} is missing; `make setup` fetches it")
    doc = json.loads(DISCOVERY.read_text())
    assert doc["rootUrl"] == "https://ml.googleapis.com/"
    return build_from_document(doc, http=httplib2.Http(timeout=60),
                               client_options={"api_endpoint": served.url})


def test_predict(ml, mnist_images, in_process):
    batch = mnist_images[:50]
    body = {"instances": [{"image": img.tolist()} for img in batch]}
    default = ml.projects().predict(name=NAME, body=body).execute()
    named = ml.projects().predict(name=f"{NAME}/versions/v2", body=body).execute()
    for doc, version in ((default, "v1"), (named, "v2")):
        want = in_process(version, batch.astype(np.float32))
        np.testing.assert_array_equal([p["class_ids"] for p in doc["predictions"]], want["class_ids"])
        np.testing.assert_allclose([p["probabilities"] for p in doc["predictions"]],
                                   want["probabilities"], rtol=1e-6)


def test_models_and_versions(ml):
    model = ml.projects().models().get(name=NAME).execute()
    assert model["defaultVersion"]["name"] == f"{NAME}/versions/v1"
    version = ml.projects().models().versions().get(name=f"{NAME}/versions/v2").execute()
    assert version["isDefault"] is False and version["state"] == "READY"
    listing = ml.projects().models().versions().list(parent=NAME).execute()
    assert [v["name"] for v in listing["versions"]] == [f"{NAME}/versions/v1", f"{NAME}/versions/v2"]
    # the client's own paging helper follows nextPageToken
    request = ml.projects().models().versions().list(parent=NAME, pageSize=1)
    names = []
    while request is not None:
        page = request.execute()
        names += [v["name"] for v in page["versions"]]
        request = ml.projects().models().versions().list_next(request, page)
    assert names == [f"{NAME}/versions/v1", f"{NAME}/versions/v2"]
    models = ml.projects().models().list(parent="projects/local-project").execute()
    assert [m["name"] for m in models["models"]] == [NAME]


def test_errors_surface_as_http_errors(ml):
    with pytest.raises(HttpError) as exc:
        ml.projects().models().versions().get(name=f"{NAME}/versions/v99").execute()
    assert exc.value.resp.status == 404
    assert json.loads(exc.value.content) == {"error": "model 'mnist' has no version 'v99'"}
    with pytest.raises(HttpError) as exc:
        ml.projects().predict(name=NAME, body={"instances": [[1, 2, 3]]}).execute()
    assert exc.value.resp.status == 400 and "784 pixels" in json.loads(exc.value.content)["error"]
