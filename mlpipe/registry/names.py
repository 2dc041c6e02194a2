"""Names of models, versions and aliases: AI Platform's rule, enforced everywhere a name enters.

A name is letters, digits and underscores, starts with a letter, at most 128 characters. Because `.`,
`/`, `%` and `\\` can never pass, a validated name is also safe to use as a path component.
"""

from __future__ import annotations

import re

from mlpipe.errors import InvalidNameError

NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
VERSION_RE = re.compile(r"v([1-9][0-9]*)")


def validate_name(kind: str, name: object) -> str:
    """Return `name` if it is a valid `kind` ("model", "version", "alias") name, else raise."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        shown = repr(name)[:80]
        raise InvalidNameError(
            f"invalid {kind} name {shown}: use letters, digits and underscores, starting with a "
            "letter (at most 128 characters)"
        )
    return name


def version_name(number: int) -> str:
    return f"v{number}"


def version_number(name: str) -> int | None:
    """The N of a registry-assigned name `vN`, or None for any other name."""
    m = VERSION_RE.fullmatch(name)
    return int(m.group(1)) if m else None
