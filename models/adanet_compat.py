"""Import adanet 0.9.0 on TensorFlow 2.15: the one place that knows about the module move.

adanet imports `tensorflow.python.training.tracking.graph_view`, which TF 2.15 moved to
`tensorflow.python.checkpoint.graph_view`. Registering the old names in `sys.modules` before adanet
is imported is enough; nothing in adanet's behaviour changes. Use `from models.adanet_compat import
adanet` everywhere instead of `import adanet`.
"""

from __future__ import annotations

import importlib
import sys
import types

_MOVED_MODULES = {
    "tensorflow.python.training.tracking.graph_view": "tensorflow.python.checkpoint.graph_view",
    "tensorflow.python.training.tracking.util": "tensorflow.python.checkpoint.checkpoint",
    "tensorflow.python.training.tracking.base": "tensorflow.python.trackable.base",
    "tensorflow.python.training.tracking.tracking": "tensorflow.python.trackable.autotrackable",
}


def install_shim() -> None:
    """Make the pre-2.13 module names resolve to their TF 2.15 homes (idempotent)."""
    package = "tensorflow.python.training.tracking"
    if package not in sys.modules:
        try:
            importlib.import_module(package)
        except ImportError:
            pkg = types.ModuleType(package)
            pkg.__path__ = []  # a namespace-like package so submodule imports consult sys.modules
            sys.modules[package] = pkg
            importlib.import_module("tensorflow.python.training").tracking = pkg
    pkg = sys.modules[package]
    for old, new in _MOVED_MODULES.items():
        if old in sys.modules:
            continue
        try:
            module = importlib.import_module(new)
        except ImportError:
            continue
        sys.modules[old] = module
        setattr(pkg, old.rsplit(".", 1)[1], module)


install_shim()

import adanet  # noqa: E402  (must follow the shim)

__all__ = ["adanet", "install_shim"]
