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
    POST   /v1/projects/P/models/M:feedback               a label for a served prediction or an example
TF Serving REST (versions are integers N, served from registry version vN; labels are aliases):
    POST   /v1/models/M[/versions/N | /labels/A]:predict
    GET    /v1/models/M[/versions/N | /labels/A]          model status
    GET    /v1/models/M[/versions/N | /labels/A]/metadata signature_def
    POST   /v1/models/M:feedback                          the same feedback route

Path traversal is refused before routing: segments starting with a dot and percent-encoded dots,
slashes or backslashes are a 400, whatever the route. Names are validated by the handlers.

This module owns the URL patterns; the app binds each to its handler functions in a `Route` table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlpipe.errors import InvalidNameError, MethodNotAllowedError, NotFoundError

_SEG = r"[^/:]+"
_TF = rf"/v1/models/(?P<model>{_SEG})(?:/versions/(?P<number>{_SEG})|/labels/(?P<alias>{_SEG}))?"
_ML = rf"/v1/projects/(?P<project>{_SEG})/models"

# ml v1
ML_MODELS = re.compile(rf"{_ML}")
ML_MODEL = re.compile(rf"{_ML}/(?P<model>{_SEG})")
ML_PREDICT = re.compile(rf"{_ML}/(?P<model>{_SEG}):predict")
ML_VERSIONS = re.compile(rf"{_ML}/(?P<model>{_SEG})/versions")
ML_VERSION = re.compile(rf"{_ML}/(?P<model>{_SEG})/versions/(?P<version>{_SEG})")
ML_VERSION_PREDICT = re.compile(rf"{_ML}/(?P<model>{_SEG})/versions/(?P<version>{_SEG}):predict")
ML_SET_DEFAULT = re.compile(rf"{_ML}/(?P<model>{_SEG})/versions/(?P<version>{_SEG}):setDefault")
ML_FEEDBACK = re.compile(rf"{_ML}/(?P<model>{_SEG}):feedback")
# TF Serving REST
TF_PREDICT = re.compile(rf"{_TF}:predict")
TF_STATUS = re.compile(rf"{_TF}")
TF_METADATA = re.compile(rf"{_TF}/metadata")
TF_FEEDBACK = re.compile(rf"/v1/models/(?P<model>{_SEG}):feedback")

Handler = Callable[..., Any]


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    methods: Mapping[str, Handler]  # HTTP method → handler, called with the path's parameters


OPTIONS: Handler = object()  # type: ignore[assignment]  (the match for an OPTIONS request: answer Allow)

_ENCODED_SEPARATORS = ("%2e", "%2f", "%5c", "\\")


@dataclass(frozen=True)
class Match:
    handler: Handler
    params: dict[str, str]
    allowed: tuple[str, ...]


def match(table: Sequence[Route], method: str, path: str) -> Match:
    """The handler for `method path` (the first route whose pattern matches the path decides);
    NotFoundError or MethodNotAllowedError otherwise."""
    for route in table:
        m = route.pattern.fullmatch(path)
        if m is None:
            continue
        methods = route.methods
        params = {k: v for k, v in m.groupdict().items() if v is not None}
        allow = allowed(methods)
        if method in methods:
            return Match(methods[method], params, allow)
        if method == "HEAD" and "GET" in methods:
            return Match(methods["GET"], params, allow)
        if method == "OPTIONS":
            return Match(OPTIONS, params, allow)
        raise MethodNotAllowedError(f"method {method} is not allowed on {path}", allow)
    raise NotFoundError(f"no such resource: {method} {path}")


def allowed(methods: Mapping[str, Handler]) -> tuple[str, ...]:
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
