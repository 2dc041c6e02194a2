"""URL routing for the two REST dialects the function speaks.

AI Platform Prediction (ml v1), as Google's discovery document builds the URLs:
    GET    /v1/projects/P/models                          models.list
    GET    /v1/projects/P/models/M                        models.get (with defaultVersion)
    POST   /v1/projects/P/models/M:predict                predict with the default version
    GET    /v1/projects/P/models/M/versions               versions.list
    GET    /v1/projects/P/models/M/versions/V             versions.get
    DELETE /v1/projects/P/models/M/versions/V             versions.delete
    POST   /v1/projects/P/models/M/versions/V:predict     predict with version V
    POST   /v1/projects/P/models/M/versions/V:setDefault  versions.setDefault
TF Serving REST (versions are integers N, served from registry version vN; labels are aliases):
    POST   /v1/models/M[/versions/N | /labels/A]:predict
    GET    /v1/models/M[/versions/N | /labels/A]          model status
    GET    /v1/models/M[/versions/N | /labels/A]/metadata signature_def

Path traversal is refused before routing: segments starting with a dot and percent-encoded dots,
slashes or backslashes are a 400, whatever the route. Names are validated by the handlers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlpipe.errors import InvalidNameError, MethodNotAllowedError, NotFoundError

_SEG = r"[^/:]+"
_TF = rf"/v1/models/(?P<model>{_SEG})(?:/versions/(?P<number>{_SEG})|/labels/(?P<alias>{_SEG}))?"
_ML = rf"/v1/projects/(?P<project>{_SEG})/models"

# (pattern, {method: handler name}); the first pattern matching the path decides.
ROUTES: list[tuple[re.Pattern[str], dict[str, str]]] = [
    (re.compile(rf"{_ML}"), {"GET": "list_models"}),
    (re.compile(rf"{_ML}/(?P<model>{_SEG})"), {"GET": "get_model"}),
    (re.compile(rf"{_ML}/(?P<model>{_SEG}):predict"), {"POST": "predict"}),
    (re.compile(rf"{_ML}/(?P<model>{_SEG})/versions"), {"GET": "list_versions"}),
    (re.compile(rf"{_ML}/(?P<model>{_SEG})/versions/(?P<version>{_SEG})"),
     {"GET": "get_version", "DELETE": "delete_version"}),
    (re.compile(rf"{_ML}/(?P<model>{_SEG})/versions/(?P<version>{_SEG}):predict"), {"POST": "predict"}),
    (re.compile(rf"{_ML}/(?P<model>{_SEG})/versions/(?P<version>{_SEG}):setDefault"),
     {"POST": "set_default"}),
    (re.compile(rf"{_TF}:predict"), {"POST": "tf_predict"}),
    (re.compile(rf"{_TF}"), {"GET": "tf_status"}),
    (re.compile(rf"{_TF}/metadata"), {"GET": "tf_metadata"}),
]

_ENCODED_SEPARATORS = ("%2e", "%2f", "%5c", "\\")


@dataclass(frozen=True)
class Match:
    handler: str
    params: dict[str, str]
    allowed: tuple[str, ...]


def match(method: str, path: str) -> Match:
    """The handler for `method path`; NotFoundError or MethodNotAllowedError otherwise."""
    for pattern, methods in ROUTES:
        m = pattern.fullmatch(path)
        if m is None:
            continue
        params = {k: v for k, v in m.groupdict().items() if v is not None}
        allow = allowed(methods)
        if method in methods:
            return Match(methods[method], params, allow)
        if method == "HEAD" and "GET" in methods:
            return Match(methods["GET"], params, allow)
        if method == "OPTIONS":
            return Match("options", params, allow)
        raise MethodNotAllowedError(f"method {method} is not allowed on {path}", allow)
    raise NotFoundError(f"no such resource: {method} {path}")


def allowed(methods: dict[str, str]) -> tuple[str, ...]:
    extra = ("HEAD",) if "GET" in methods else ()
    return (*methods, *extra, "OPTIONS")


def check_traversal(raw_path: str, path: str) -> None:
    """Refuse encoded separators, and segments starting with '.' (`..`, `.`, `..:predict`; no valid
    name starts with one) in the raw or decoded path."""
    lowered = raw_path.lower()
    if any(s in lowered for s in _ENCODED_SEPARATORS):
        raise InvalidNameError("encoded dots, slashes or backslashes are not allowed in resource names")
    for p in (raw_path, path):
        if any(seg.startswith(".") for seg in p.split("/")):
            raise InvalidNameError("path segments starting with '.' ('..', '.') are not allowed")
