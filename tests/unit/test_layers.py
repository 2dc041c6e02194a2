"""The layer rule of docs/architecture.md, enforced: imports point down, never in a circle, and the
commands that only read the registry or print help start without TensorFlow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mlpipe.config import REPO_ROOT

PACKAGES = ("mlpipe", "models", "pipeline")
# The CLI entry point is the one module of the library allowed to reach up (lazily, to register the
# pipeline's subcommands).
ENTRY_POINT = "mlpipe.cli"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO_ROOT / pkg).rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module `path` imports, at module level or inside functions: `from a.b import c`
    counts as `a.b.c` when that is a module, else as `a.b`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in PACKAGES)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def test_the_library_never_imports_the_pipeline_or_the_models():
    graph = import_graph()
    offending = {
        module: sorted(i for i in imported if i.split(".")[0] in ("pipeline", "models"))
        for module, imported in graph.items()
        if module.split(".")[0] == "mlpipe" and module != ENTRY_POINT
    }
    assert {m: i for m, i in offending.items() if i} == {}


def test_the_models_never_import_the_pipeline():
    graph = import_graph()
    offending = {m: sorted(i for i in imported if i.startswith("pipeline"))
                 for m, imported in graph.items() if m.startswith("models")}
    assert {m: i for m, i in offending.items() if i} == {}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_there_are_no_import_cycles():
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def _bound_names(path: Path) -> set[str]:
    """Names a module defines at its top level (functions, classes, assignments, imports)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def test_every_import_of_a_project_name_resolves():
    """Lazy imports inside functions are not executed by importing a module: a name moved away
    breaks only when that function runs. Check them all statically."""
    modules = project_modules()
    files = {**modules, **{_module_name(p): p for p in sorted((REPO_ROOT / "tests").rglob("*.py"))}}
    missing = []
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
                continue
            if node.module.split(".")[0] not in PACKAGES:
                continue
            if node.module not in modules:
                missing.append(f"{name}: no module {node.module}")
                continue
            defined = _bound_names(modules[node.module])
            missing += [f"{name}: {node.module} has no {a.name}" for a in node.names
                        if a.name not in defined and f"{node.module}.{a.name}" not in modules]
    assert missing == []


def _tensorflow_loaded_after(code: str) -> bool:
    probe = f"import sys\n{code}\nprint('tensorflow' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("argv", [["lineage", "--help"], ["runs", "list", "--help"], ["run", "--help"],
                                  ["models", "list"], ["--help"]])
def test_light_commands_start_without_tensorflow(tmp_path, argv):
    argv = argv + (["--state-dir", str(tmp_path)] if argv == ["models", "list"] else [])
    code = f"from mlpipe.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    assert _tensorflow_loaded_after(code) is False


def test_the_pipeline_configuration_imports_without_tensorflow():
    code = "from pipeline.configs import PROFILES, PipelineConfig\nfrom pipeline import cli"
    assert _tensorflow_loaded_after(code) is False
    # …and the probe can tell: the model code does load it.
    assert _tensorflow_loaded_after("import models.preprocessing") is True


HEAVY = ("tensorflow", "tensorflow_model_analysis", "tfx", "apache_beam", "tensorflow_transform",
         "tensorflow_data_validation", "tfx_bsl", "adanet")


def _external_imports(path: Path) -> set[str]:
    """Top-level names of the non-project packages `path` imports, at module level or in functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(PACKAGES)


def test_the_report_readers_never_import_tensorflow():
    """`mlpipe runs` and `mlpipe lineage` read MLMD and artifact files through mlpipe.metadata and
    mlpipe.lineage: nothing there may load TensorFlow, TFMA, TFX or Beam, not even lazily (they made
    the commands take 15 s; tests/unit/test_tfma_files.py runs the commands on a store)."""
    offending = {name: sorted(_external_imports(path) & set(HEAVY)) for name, path in project_modules().items()
                 if name.startswith(("mlpipe.metadata", "mlpipe.lineage"))}
    assert {m: i for m, i in offending.items() if i} == {}
