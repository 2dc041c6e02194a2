"""How paths appear in messages: relative to the current directory where they are inside it."""

from __future__ import annotations

import os
from pathlib import Path


def display_path(path: str | os.PathLike[str]) -> str:
    """`path` relative to the working directory when it lies inside it (`.mlpipe/registry`), else as
    given; URLs (`gs://…`) unchanged."""
    text = os.fspath(path)
    if "://" in text:
        return text
    try:
        rel = Path(text).absolute().relative_to(Path.cwd())
    except ValueError:
        return text
    return str(rel) if str(rel) != "." else "."
