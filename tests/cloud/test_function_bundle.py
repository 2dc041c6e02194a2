"""`mlpipe function-bundle OUT/`: a self-contained Cloud Functions source directory.

The static tests check what `gcloud functions deploy` would need (the code the function imports is
all inside, the third-party packages are all in requirements.txt); test_bundle_serves_... runs the
bundle in the real functions-framework server against a registry read through the gs:// code path.
"""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from mlpipe.cli import main
from mlpipe.cloud.function_bundle import (
    ENTRY_MODULES,
    FUNCTION_LOCK_FILE,
    LOCK_FILE,
    REQUIREMENTS,
    RUNTIME,
    RUNTIME_PYTHON,
    read_lock,
    write_bundle,
)
from mlpipe.config import load_settings
from mlpipe.errors import UsageError
from mlpipe.serving.server import TARGET


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    settings = load_settings(environ={}, project="my-proj", registry_root="gs://my-bucket/registry")
    return write_bundle(tmp_path_factory.mktemp("fn") / "bundle", settings)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from google.cloud import bigquery`: the module may be the imported name.
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_bundle_layout(bundle):
    out = bundle.path
    assert {p.name for p in out.iterdir()} == {"main.py", "requirements.txt", "env.yaml", ".gcloudignore",
                                              "mlpipe"}
    main_py = (out / "main.py").read_text()
    assert f"from mlpipe.serving.main import {TARGET}" in main_py
    assert (out / "mlpipe" / "serving" / "main.py").read_text() == (
        Path(sys.modules["mlpipe"].__file__).parent / "serving" / "main.py").read_text()
    for module in ENTRY_MODULES:
        assert module in bundle.modules
    # Command-line shells and the pipeline are not part of a function.
    assert not list(out.rglob("cli.py"))
    assert not (out / "pipeline").exists() and not (out / "models").exists()


def test_every_mlpipe_import_resolves_inside_the_bundle(bundle):
    files = list(bundle.path.rglob("*.py"))
    for path in files:
        for name in _imports(path):
            if name.split(".")[0] != "mlpipe":
                continue
            # A module, or (`from mlpipe.registry import Registry`) an attribute of one.
            assert _bundled(bundle.path, name) or _bundled(bundle.path, name.rsplit(".", 1)[0]), \
                f"{path}: {name}"


def test_requirements_cover_every_third_party_import(bundle):
    pinned = {}
    for line in (bundle.path / "requirements.txt").read_text().split():
        name, _, version = line.partition("==")
        assert version, f"unpinned requirement {line}"
        pinned[name] = version
    assert pinned["tensorflow-cpu"] == metadata.version("tensorflow")
    assert pinned["functions-framework"] == metadata.version("functions-framework")
    # The whole frozen set: requirements-function.lock, line for line.
    assert pinned == read_lock(FUNCTION_LOCK_FILE)
    # What the pinned distributions bring (tensorflow-cpu is installed here as tensorflow).
    installed = {"tensorflow" if n == "tensorflow-cpu" else n for n in pinned}
    reachable = _dependency_closure(installed)
    providers = _providers()
    for path in bundle.path.rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in ("mlpipe", "__future__"):
                continue
            # Which installed distributions hold this module (for a namespace like `google`, only
            # those with the sub-module); none means the name is an attribute, not a module.
            dists = {d for d, files in providers.get(top, {}).items() if _provides(files, name)}
            if dists:
                assert dists & reachable, f"{path.name} imports {name}, which no requirement installs"
            else:
                assert top in providers, f"{path.name} imports {name}, which is not installed here"


def test_frozen_set_is_complete_and_matches_the_training_lock():
    """Every top-level package at requirements.lock's version; the function lock resolved by uv (which
    writes every transitive package, pinned) for the Python of the runtime the deploy command names."""
    training, function = read_lock(LOCK_FILE), read_lock(FUNCTION_LOCK_FILE)
    for name, installed in REQUIREMENTS.items():
        if name != "protobuf":  # see FUNCTION_LOCK_FILE: protobuf 4 on Python >= 3.11
            assert function[name] == training[installed], name
    header = FUNCTION_LOCK_FILE.read_text().splitlines()[1]
    assert f"--python-version {RUNTIME_PYTHON} " in header
    assert RUNTIME == "python" + RUNTIME_PYTHON.replace(".", "") == "python311"
    # Transitive packages are there too (not just the top level), each with one exact version.
    assert {"grpcio", "grpcio-status", "google-api-core", "absl-py", "keras", "flask"} <= set(function)
    assert all(v and v[0].isdigit() for v in function.values())


def test_env_file_holds_the_function_settings_as_strings(bundle):
    env = yaml.safe_load((bundle.path / "env.yaml").read_text())
    assert env == {
        "MLPIPE_REGISTRY_ROOT": "gs://my-bucket/registry", "MLPIPE_PROJECT": "my-proj",
        "MLPIPE_DATASET": "mnist", "MLPIPE_MODEL": "mnist", "MLPIPE_BQ_TARGET": "cloud",
        "MLPIPE_BQ_LOCATION": "US", "MLPIPE_LOG_PREDICTIONS": "1",
    }
    # The function's own settings reader understands every value.
    settings = load_settings(environ=env)
    assert (settings.registry_location, settings.bq_target) == ("gs://my-bucket/registry", "cloud")


def test_existing_directory_is_not_overwritten(tmp_path, bundle):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="already exists"):
        write_bundle(other, load_settings(environ={}))
    with pytest.raises(UsageError, match="does not look like a function bundle"):
        write_bundle(other, load_settings(environ={}), force=True)
    assert (other / "keep.txt").read_text() == "mine"


def test_cli_writes_a_bundle_and_prints_the_deploy_command(tmp_path, capsys):
    out = tmp_path / "fn"
    assert main(["function-bundle", str(out), "--registry-root", "gs://b/registry", "--project", "p1"]) == 0
    printed = capsys.readouterr().out
    assert f"--source={out}" in printed and f"--entry-point={TARGET}" in printed
    assert "note:" not in printed  # a gs:// root needs no warning
    assert main(["function-bundle", str(out), "--force", "--registry-root", "/local/registry"]) == 0
    assert "note: the registry root /local/registry is a local path" in capsys.readouterr().out


def _bundled(root: Path, module: str) -> bool:
    base = root.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def _providers() -> dict[str, dict[str, set[str]]]:
    """top-level module → {distribution: its files}. From the installed files, since Python 3.10's
    packages_distributions() only reads top_level.txt, which e.g. numpy's wheel does not have."""
    out: dict[str, dict[str, set[str]]] = {}
    for dist in metadata.distributions():
        files = {str(f) for f in dist.files or []}
        for top in {f.split("/")[0].removesuffix(".py") for f in files}:
            out.setdefault(top, {})[_norm(dist.metadata["Name"])] = files
    return out


def _provides(files: set[str], module: str) -> bool:
    path = module.replace(".", "/")
    return f"{path}.py" in files or any(f.startswith(f"{path}/") for f in files)


def _dependency_closure(names: set[str]) -> set[str]:
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [_norm(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_norm(req.name))
    return seen
