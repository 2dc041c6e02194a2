"""The registry backend for URL roots (gs://…), exercised through file:// URLs and TensorFlow's
in-memory ram:// filesystem: the same tf.io.gfile calls, without a cloud account."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
import tensorflow as tf

from mlpipe.errors import UsageError
from mlpipe.registry import open_registry
from mlpipe.registry.gfile_storage import GfileStorage, ObjectLock
from mlpipe.registry.storage import LocalStorage


@pytest.fixture
def roots(tmp_path, fake_models):
    """A registry written locally (v1 default, v2 aliased `candidate`), and the same one by URL."""
    local = open_registry(tmp_path / "registry", "mnist")
    local.push(fake_models[0], {"test_accuracy": 0.9})
    local.push(fake_models[1], {"test_accuracy": 0.8}, promote=False)
    local.set_alias("candidate", "v2")
    return local, open_registry((tmp_path / "registry").as_uri(), "mnist")


def test_url_roots_select_the_gfile_backend(tmp_path):
    assert type(open_registry(tmp_path, "mnist").storage) is LocalStorage
    assert type(open_registry(tmp_path.as_uri(), "mnist").storage) is GfileStorage
    # Constructing needs no network.
    assert type(open_registry("gs://bucket/registry", "mnist").storage) is GfileStorage


def test_unsupported_scheme_is_refused_clearly():
    with pytest.raises(UsageError, match="only local directories and gs:// URIs are supported"):
        open_registry("s3://bucket/registry", "mnist")
    with pytest.raises(UsageError, match="is a URL, not a local directory"):
        LocalStorage("gs://bucket/registry")


def test_reads_what_the_local_registry_wrote(roots):
    local, remote = roots
    assert remote.list_models() == ["mnist"]
    assert [(v.name, v.is_default, v.aliases) for v in remote.list_versions()] == [
        ("v1", True, ()), ("v2", False, ("candidate",))]
    assert remote.resolve(alias="candidate").metadata.test_accuracy == 0.8
    assert remote.resolve().signatures == local.resolve().signatures


def test_saved_model_is_mirrored_to_a_local_directory(roots):
    local, remote = roots
    info = remote.get("v1")
    assert not info.is_local and info.saved_model_uri.startswith("file://")
    mirrored = remote.local_saved_model(info)
    assert mirrored.is_dir()
    assert mirrored != local.get("v1").saved_model_dir
    copied = sorted(p.relative_to(mirrored) for p in mirrored.rglob("*"))
    original = sorted(p.relative_to(local.get("v1").saved_model_dir)
                      for p in local.get("v1").saved_model_dir.rglob("*"))
    assert copied == original
    assert (mirrored / "saved_model.pb").read_bytes() == (
        local.get("v1").saved_model_dir / "saved_model.pb").read_bytes()
    # No staging leftovers beside the mirrored version.
    assert [p.name for p in mirrored.parent.iterdir()] == ["saved_model"]


def test_listing_versions_copies_nothing(roots):
    _, remote = roots
    remote.list_versions()
    assert not any(remote.storage.mirror.rglob("saved_model.pb"))


def test_default_change_is_seen_by_the_next_read(roots):
    local, remote = roots
    assert remote.resolve().name == "v1"
    local.set_default("v2")
    assert remote.resolve().name == "v2"


@pytest.fixture(params=["file", "ram"])
def url_root(request, tmp_path) -> str:
    if request.param == "file":
        return (tmp_path / "bucket" / "registry").as_uri()
    return f"ram://bucket-{uuid.uuid4().hex}/registry"


def test_a_url_registry_is_managed_like_a_local_one(url_root, fake_models):
    remote = open_registry(url_root, "mnist")
    v1 = remote.push(fake_models[0], {"test_accuracy": 0.9, "model_artifact_id": 7,
                                      "extra": {"pipeline_name": "mnist-automl"}})
    v2 = remote.push(fake_models[1], {"test_accuracy": 0.8}, promote=False)
    assert (v1.name, v2.name, remote.default_version()) == ("v1", "v2", "v1")
    assert v1.saved_model_uri == f"{url_root}/mnist/versions/v1/saved_model"
    assert remote.get("v1").metadata.model_artifact_id == 7
    remote.set_alias("candidate", "v2")
    remote.set_default("v2")
    assert remote.resolve().name == "v2" and remote.aliases() == {"candidate": "v2"}
    remote.set_default("v1")
    remote.remove_alias("candidate")
    remote.delete("v2")
    assert [v.name for v in remote.list_versions()] == ["v1"]
    # Numbers are never reused, as locally.
    assert remote.push(fake_models[1]).name == "v3"
    mirrored = remote.local_saved_model(remote.get("v3"))
    assert (mirrored / "saved_model.pb").read_bytes() == (Path(fake_models[1]) / "saved_model.pb").read_bytes()
    # No staging, temporary or lock objects left behind.
    names = {p.rstrip("/") for p in tf.io.gfile.listdir(url_root)} | {
        p.rstrip("/") for p in tf.io.gfile.listdir(f"{url_root}/mnist")}
    # (an empty .staging directory stays on file://; object stores have no empty directories)
    assert names - {".staging"} == {"mnist", "state.json", "versions"}, names
    assert not tf.io.gfile.exists(f"{url_root}/mnist/.staging") or not tf.io.gfile.listdir(
        f"{url_root}/mnist/.staging")


def test_state_is_replaced_through_a_rename(url_root, monkeypatch):
    """No writer writes state.json in place: a crash mid-write leaves the old state."""
    storage = GfileStorage(url_root)
    storage.write_json("mnist/state.json", {"default": "v1"})
    written: list[str] = []
    real = tf.io.gfile.GFile

    def recording(name, mode="r"):
        if "w" in mode:
            written.append(name)
        return real(name, mode)

    monkeypatch.setattr(storage._gfile, "GFile", recording)
    storage.write_json("mnist/state.json", {"default": "v2"})
    assert written and not any(w.endswith("/state.json") for w in written)
    assert storage.read_json("mnist/state.json") == {"default": "v2"}


def test_a_half_published_version_is_invisible(url_root, fake_models):
    remote = open_registry(url_root, "mnist")
    remote.push(fake_models[0])
    # What a writer that died in the middle of `publish` leaves: files, but no version.json yet.
    tf.io.gfile.makedirs(f"{url_root}/mnist/versions/v2/saved_model")
    tf.io.gfile.copy(str(Path(fake_models[1]) / "saved_model.pb"),
                     f"{url_root}/mnist/versions/v2/saved_model/saved_model.pb")
    assert [v.name for v in remote.list_versions()] == ["v1"]
    # The next push removes the leftover (state.json never recorded it, so v2 never existed for a
    # reader) and publishes its own complete v2.
    v2 = remote.push(fake_models[1])
    assert v2.name == "v2" and [v.name for v in remote.list_versions()] == ["v1", "v2"]
    assert tf.io.gfile.exists(f"{url_root}/mnist/versions/v2/version.json")


def test_the_lock_excludes_a_second_writer_and_expires(url_root):
    lock = ObjectLock(f"{url_root}/.lock", tf.io.gfile, ttl_s=60, poll_s=0.05)
    token = lock.acquire()
    other = ObjectLock(f"{url_root}/.lock", tf.io.gfile, ttl_s=60, poll_s=0.05)
    with pytest.raises(UsageError, match="held by another writer"):
        other.acquire(timeout_s=0.3)
    lock.release(token)
    other.release(other.acquire(timeout_s=0.3))
    # A holder that died: its lock expires and is broken out.
    dead = ObjectLock(f"{url_root}/.lock", tf.io.gfile, ttl_s=0.1, poll_s=0.05)
    dead.acquire()
    time.sleep(0.2)
    other.release(other.acquire(timeout_s=2))


def test_concurrent_pushes_get_distinct_versions(url_root, fake_models):
    remote = open_registry(url_root, "mnist")
    results: list[str] = []
    threads = [threading.Thread(target=lambda m=m: results.append(remote.push(m).name)) for m in fake_models[:2]]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == ["v1", "v2"]
    assert open_registry(url_root, "mnist").resolve().name in results


def test_paths_outside_the_root_are_refused(roots):
    _, remote = roots
    with pytest.raises(UsageError, match="outside the registry root"):
        remote.storage.read_json("../elsewhere/state.json")
