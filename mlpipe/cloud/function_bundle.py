"""`mlpipe function-bundle OUT/`: a directory `gcloud functions deploy --source OUT` accepts.

It holds the serving function exactly as `mlpipe serve` runs it (mlpipe/serving, copied in as a
package together with the mlpipe modules it imports), a `main.py` that exposes its target, the full
frozen `requirements.txt` (requirements-function.lock) and `env.yaml` (the MLPIPE_* settings, for
`--env-vars-file`). With a `gs://`
registry root the function reads models from Cloud Storage (mlpipe/registry/gfile_storage.py).
"""

from __future__ import annotations

import ast
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlpipe.config import REPO_ROOT, Settings
from mlpipe.errors import UsageError
from mlpipe.serving.server import TARGET

log = logging.getLogger(__name__)

# The function's entry module and the storage backend the registry picks for gs:// roots at run
# time (selected by URL scheme, so no static import leads to it).
ENTRY_MODULES = ("mlpipe.serving.main", "mlpipe.registry.gfile_storage")
# Cloud Run functions' Python runtime. python310 is deprecated (Python 3.10 ends in 2026-10); the
# models are built and served with TensorFlow 2.15.1, whose wheels stop at CPython 3.11, so python311
# is the newest runtime that can install the frozen set (python312+ would need another TensorFlow
# than the one that trained the models).
RUNTIME = "python311"
RUNTIME_PYTHON = "3.11"
# The lock `make setup` installs (the training side), and the function's own full lock, resolved for
# RUNTIME_PYTHON by `make function-lock` from requirements-function.in (the top-level packages at the
# versions of LOCK_FILE). One lock cannot serve both: on Python >= 3.11 google-api-core[grpc] needs
# grpcio-status >= 1.49.1, hence protobuf 4, while TFX 1.15 holds the training side at protobuf 3.20.
LOCK_FILE = REPO_ROOT / "requirements.lock"
FUNCTION_LOCK_FILE = REPO_ROOT / "requirements-function.lock"
# Distribution names installed in the function (the top of the frozen set), with the lock's name of
# each. TensorFlow's CPU-only wheel is the same code, without the CUDA libraries a function cannot use.
REQUIREMENTS: dict[str, str] = {
    "tensorflow-cpu": "tensorflow",
    "functions-framework": "functions-framework",
    "numpy": "numpy",
    "protobuf": "protobuf",
    "pillow": "pillow",
    "pyarrow": "pyarrow",
    "google-cloud-bigquery": "google-cloud-bigquery",
    "google-cloud-bigquery-storage": "google-cloud-bigquery-storage",
    # The registry's lock on gs:// (mlpipe/registry/gfile_storage.py); serving only reads.
    "google-cloud-storage": "google-cloud-storage",
    # The serving edge's fast JSON decoder (optional in instances.py).
    "orjson": "orjson",
}

MAIN_PY = '''\
"""Cloud Functions entry point: the mlpipe serving function (ml v1 + TF Serving REST).

Deploy with `--entry-point {target}`; run locally with
`functions-framework --source main.py --target {target}`. Settings come from MLPIPE_* environment
variables (env.yaml beside this file).
"""

import os
import sys

# The framework appends this directory to sys.path; put it first so the bundled `mlpipe` package is
# the one imported, even where another copy is installed.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mlpipe.serving.main import {target}  # noqa: E402,F401
'''

GCLOUDIGNORE = """\
# Deploy exactly what mlpipe function-bundle wrote.
__pycache__/
*.pyc
"""


@dataclass(frozen=True)
class Bundle:
    path: Path
    target: str
    modules: tuple[str, ...]  # bundled mlpipe modules, dotted
    requirements: tuple[str, ...]  # pinned lines of requirements.txt
    env: dict[str, str]


def write_bundle(out: Path, settings: Settings, force: bool = False) -> Bundle:
    """Write the function's source directory to `out` (refused if it exists, unless `force`)."""
    out = Path(out)
    if out.exists():
        if not force:
            raise UsageError(f"{out} already exists; choose a new directory or pass --force")
        if not (out / "main.py").is_file() or not (out / "mlpipe").is_dir():
            raise UsageError(f"{out} does not look like a function bundle; not overwriting it")
        shutil.rmtree(out)
    modules = module_closure(ENTRY_MODULES)
    out.mkdir(parents=True)
    for module in modules:
        src = _module_file(module)
        dest = out / src.relative_to(REPO_ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    requirements = pinned_requirements()
    env = function_env(settings)
    (out / "main.py").write_text(MAIN_PY.format(target=TARGET))
    (out / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (out / "env.yaml").write_text("".join(f"{k}: {_yaml_str(v)}\n" for k, v in env.items()))
    (out / ".gcloudignore").write_text(GCLOUDIGNORE)
    log.info("wrote function bundle %s (%d modules)", out, len(modules))
    return Bundle(out, TARGET, modules, tuple(requirements), env)


def function_env(settings: Settings) -> dict[str, str]:
    """The MLPIPE_* variables the deployed function needs: where the registry is, which project it
    answers for, and where predictions are logged (real BigQuery in the cloud)."""
    return {
        "MLPIPE_REGISTRY_ROOT": settings.registry_location,
        "MLPIPE_PROJECT": settings.project,
        "MLPIPE_DATASET": settings.dataset,
        "MLPIPE_MODEL": settings.model_name,
        "MLPIPE_BQ_TARGET": "cloud",
        "MLPIPE_BQ_LOCATION": settings.bq_location,
        "MLPIPE_LOG_PREDICTIONS": "1" if settings.log_predictions else "0",
    }


def module_closure(entries: tuple[str, ...]) -> tuple[str, ...]:
    """Every `mlpipe` module the entry modules import, directly or not, at module level or inside
    functions (the serving code imports some lazily), plus the packages that contain them."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        todo.extend(m for m in _imports(_module_file(module)) if m not in seen)
    return tuple(sorted(seen))


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from mlpipe.registry import Registry` may name a module or an attribute.
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] == "mlpipe" and _exists(n))
    return found


def _exists(module: str) -> bool:
    try:
        _module_file(module)
    except FileNotFoundError:
        return False
    return True


def _module_file(module: str) -> Path:
    base = REPO_ROOT.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(module)


def pinned_requirements(lock_file: Path | None = None) -> list[str]:
    """The full frozen requirement set of the function: every line of requirements-function.lock
    (REQUIREMENTS and everything they need, resolved by uv for the function's Python). A pip install
    of it resolves nothing: no backtracking, and no transitive version can float."""
    lock_file = lock_file or FUNCTION_LOCK_FILE
    if not lock_file.is_file():
        raise UsageError(f"{lock_file} is missing; run `make function-lock`")
    pins = read_lock(lock_file)
    missing = [name for name in REQUIREMENTS if _canonical(name) not in pins]
    if missing:
        raise UsageError(f"{lock_file.name} lacks {', '.join(missing)}; run `make function-lock`")
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def read_lock(lock_file: Path = LOCK_FILE) -> dict[str, str]:
    """`name==version` lines of a uv/pip-compile lock → {canonical name: version}."""
    pins = {}
    for line in lock_file.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            pins[_canonical(name.split("[", 1)[0])] = version.split(";", 1)[0].strip()
    return pins


def _canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def _yaml_str(value: str) -> str:
    # Double-quoted YAML scalars are JSON strings, so every value stays a string ("1", not 1).
    return json.dumps(value)
