"""The read-only registry backend for URL roots (gs://…), exercised through file:// URLs: the same
tf.io.gfile calls, on local files."""

from __future__ import annotations

import pytest

from mlpipe.errors import UsageError
from mlpipe.registry import open_registry
from mlpipe.registry.gfile_storage import GfileStorage
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


def test_writes_are_refused(roots, fake_models):
    _, remote = roots
    for change in (lambda: remote.set_default("v2"), lambda: remote.delete("v2"),
                   lambda: remote.set_alias("x", "v1"), lambda: remote.push(fake_models[0])):
        with pytest.raises(UsageError, match="read-only"):
            change()


def test_paths_outside_the_root_are_refused(roots):
    _, remote = roots
    with pytest.raises(UsageError, match="outside the registry root"):
        remote.storage.read_json("../elsewhere/state.json")
