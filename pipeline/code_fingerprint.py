"""A content fingerprint of the project code a component runs, so that editing it invalidates the cache.

TFX fingerprints user code only when it gets a `module_file`: it packages the file's directory into a
wheel whose version is a hash of its `.py` files, and the wheel's path becomes the `module_path`
execution property, which is part of the cache key (`tfx/components/util/udf_utils.py`). This pipeline
names its code by import path (`models.preprocessing.preprocessing_fn`) and runs custom executors from
`pipeline/components/`, so TFX sees no change when that code changes.

Here each component gets the sha256 of the project source files it can execute: the module that holds
its code plus every project module that one imports, directly or not (found by reading the `import`
statements with `ast`, function-level imports included), plus their packages' `__init__.py`. The
fingerprint goes into an execution property (`custom_config["code"]` or a `code_fingerprint` parameter),
so it is part of the cache key locally and in the compiled Vertex pipeline. Imports no TensorFlow.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("models", "pipeline", "mlpipe")


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_project(module: str) -> bool:
    return module.split(".", 1)[0] in PROJECT_PACKAGES


def _imports(path: Path, module: str) -> set[str]:
    """Project modules that `module` (at `path`) imports, as dotted names."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # `from models import generators`: the names may be modules themselves.
            found.update(f"{target}.{a.name}" for a in node.names if a.name != "*")
    return {m for m in found if m and _is_project(m)}


def module_closure(modules: Iterable[str], root: Path | None = None) -> list[Path]:
    """The source files of `modules` and of every project module they import, sorted."""
    root = root or REPO_ROOT
    files: set[Path] = set()
    todo = [m for m in modules]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        for i in range(1, len(parts)):  # importing a.b.c runs a/__init__.py and a/b/__init__.py
            todo.append(".".join(parts[:i]))
        path = _module_file(root, module)
        if path is None:
            continue  # a name imported from a module, not a module
        files.add(path)
        todo.extend(_imports(path, module))
    return sorted(files)


def code_fingerprint(*modules: str, root: Path | None = None) -> str:
    """`sha256:<hex>` of the relative paths and contents of `module_closure(modules)` (under `root`,
    default the checkout this module is in)."""
    root = root or REPO_ROOT
    h = hashlib.sha256()
    for path in module_closure(modules, root):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return "sha256:" + h.hexdigest()


def function_module(dotted: str) -> str:
    """`models.preprocessing.preprocessing_fn` → `models.preprocessing`."""
    return dotted.rpartition(".")[0]
