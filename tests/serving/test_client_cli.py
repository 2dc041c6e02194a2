"""PredictionClient and `mlpipe predict` / `mlpipe serve` against the running server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mlpipe.cli import main
from mlpipe.client import PredictionClient
from mlpipe.config import REPO_ROOT
from mlpipe.errors import NotFoundError, PredictionRequestError, ServiceUnavailable
from tests.conftest import free_port


@pytest.fixture
def client(served):
    return PredictionClient(served.url, project="local-project", model="mnist")


def test_predict_in_batches_matches_in_process(client, mnist_images, in_process):
    images = mnist_images[:250].reshape(-1, 28, 28)
    result = client.predict(images, batch_size=100, progress=False)
    assert result.version == "v1" and len(result) == 250
    want = np.concatenate([in_process("v1", mnist_images[s : min(s + 100, 250)].astype(np.float32))["probabilities"]
                           for s in range(0, 250, 100)])
    np.testing.assert_allclose(result.probabilities, want, rtol=1e-6)
    np.testing.assert_array_equal(result.class_ids, want.argmax(axis=1))
    np.testing.assert_allclose(result.confidence, want.max(axis=1), rtol=1e-6)


def test_predict_by_version_and_alias(client, mnist_images, in_process):
    want = in_process("v2", mnist_images[:30].astype(np.float32))["class_ids"].ravel()
    for kwargs in ({"version": "v2"}, {"alias": "champion"}):
        result = client.predict(mnist_images[:30], batch_size=7, progress=False, **kwargs)
        assert result.version == "v2"
        np.testing.assert_array_equal(result.class_ids, want)


def test_model_meta(client):
    meta = client.get_model_meta()
    assert meta["name"].endswith("/versions/v1") and meta["isDefault"]
    assert meta["mlpipeMetadata"]["test_accuracy"] == 0.91
    assert client.get_model_meta("v2")["mlpipeMetadata"]["aliases"] == ["champion"]
    assert [v["name"].rsplit("/", 1)[1] for v in client.list_versions()] == ["v1", "v2"]


def test_client_errors(client, served):
    with pytest.raises(NotFoundError, match="no version 'v8'"):
        client.predict(np.zeros((1, 784), np.uint8), version="v8", progress=False)
    with pytest.raises(PredictionRequestError, match="0..255"):
        client.predict(np.full((1, 784), 300), progress=False)
    with pytest.raises(ServiceUnavailable, match="mlpipe serve"):
        PredictionClient(f"http://127.0.0.1:{free_port()}").predict(np.zeros((1, 784)), progress=False)


@pytest.fixture
def input_files(tmp_path, mnist_images):
    png = tmp_path / "digit.png"
    Image.fromarray(mnist_images[0].reshape(28, 28)).save(png)
    npy = tmp_path / "batch.npy"
    np.save(npy, mnist_images[1:4].reshape(3, 28, 28))
    jsonl = tmp_path / "instances.jsonl"
    jsonl.write_text("\n".join(json.dumps({"image": img.tolist()}) for img in mnist_images[4:6]) + "\n\n")
    return png, npy, jsonl


def test_predict_cli_prints_a_table(served, input_files, mnist_images, in_process, capsys):
    png, npy, jsonl = input_files
    code = main(["predict", "--url", served.url, "-q", str(png), str(npy), str(jsonl)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].split() == ["FILE", "INDEX", "CLASS", "CONFIDENCE"]
    rows = [line.split() for line in out[1:-1]]
    assert [(r[0], int(r[1])) for r in rows] == [(str(png), 0), (str(npy), 0), (str(npy), 1), (str(npy), 2),
                                                (str(jsonl), 0), (str(jsonl), 1)]
    want = in_process("v1", mnist_images[:6].astype(np.float32))["probabilities"]
    assert [int(r[2]) for r in rows] == want.argmax(axis=1).tolist()
    np.testing.assert_allclose([float(r[3]) for r in rows], want.max(axis=1), atol=1e-4)
    assert out[-1] == f"(6 predictions by mnist/v1 at {served.url})"
    assert main(["predict", "--url", served.url, "-q", "--alias", "champion", str(png)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("(1 predictions by mnist/v2")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.png", "error: input file"),
        (lambda p: (p / "x.txt").write_text("1") and p / "x.txt", "x.txt: use .png"),
        (lambda p: (p / "x.jsonl").write_text("{nope") and p / "x.jsonl", "is not a JSON instance"),
        (lambda p: (p / "x.png").write_bytes(b"not a png") and p / "x.png", "not a readable PNG"),
    ],
)
def test_predict_cli_errors_are_one_line(served, tmp_path, capsys, make, message):
    path = make(tmp_path)
    assert main(["predict", "--url", served.url, "-q", str(path)]) != 0
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


def test_serve_refuses_a_busy_port():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "mlpipe.cli", "serve", "--port", str(port)],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: cannot listen on 127.0.0.1:{port}")


@pytest.mark.parametrize("command", ["serve", "predict"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "--model" in capsys.readouterr().out
