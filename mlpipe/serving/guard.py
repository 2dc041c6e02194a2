"""Who may change what: the serving app's one check at the edge, for every route.

A web page the user visits can make the browser send requests to `http://127.0.0.1:8080` (a "simple"
cross-site request: POST with `text/plain`, form or no body type, DELETE after a rebinding of its own
DNS name to 127.0.0.1). It cannot read the answers, but a write does not need to be read. So:

- every request: when an allow-list of Host names is configured (`mlpipe serve` always configures
  one: the loopback names, the bound address and `--allowed-host`), a Host outside it is a 403 —
  that defeats DNS rebinding, reads included;
- every request with a mutating method (POST, PUT, PATCH, DELETE — whatever the route, so routes
  added later are covered without a line of their own):
  - an `Origin` that is not this server's own origin (or is `null`), or `Sec-Fetch-Site: cross-site`,
    is a 403;
  - a body type a browser may send cross-site without asking first (`text/*`,
    `application/x-www-form-urlencoded`, `multipart/form-data`) is a 415: send `application/json`
    (or no Content-Type);
  - when a token is configured (`--token` / MLPIPE_SERVE_TOKEN; `mlpipe serve` refuses to bind
    beyond loopback without one) it must come as `Authorization: Bearer TOKEN`, else 401.
Reads (GET, HEAD, OPTIONS) need no token.

On Cloud Functions none of the MLPIPE_SERVE_* variables is set: the platform's IAM checks callers
(`--no-allow-unauthenticated`) and owns `Authorization`; the Origin and content-type rules still apply.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from mlpipe.config import Settings
from mlpipe.errors import AuthenticationError, ForbiddenError, UnsupportedMediaTypeError

ENV_TOKEN = "MLPIPE_SERVE_TOKEN"
ENV_ALLOWED_HOSTS = "MLPIPE_SERVE_ALLOWED_HOSTS"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# Content types a browser sends cross-site without a CORS preflight (besides none at all).
SIMPLE_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


@dataclass(frozen=True)
class EdgePolicy:
    token: str | None = None
    allowed_hosts: frozenset[str] | None = None  # None: any Host (a platform in front checks)

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgePolicy:
        hosts = settings.serve_allowed_hosts
        allowed = frozenset(normalize_host(h) for h in hosts.split(",") if h.strip()) if hosts else None
        return cls(token=settings.serve_token or None, allowed_hosts=allowed)

    def check(self, method: str, headers: Mapping[str, str]) -> None:
        """Raise a 401/403/415 error for a request this server must not act on."""
        host = headers.get("Host", "")
        if self.allowed_hosts is not None and normalize_host(host) not in self.allowed_hosts:
            raise ForbiddenError(
                f"Host {host[:80]!r} is not one this server answers to; start `mlpipe serve` with "
                "--allowed-host NAME to add it"
            )
        if method.upper() not in MUTATING:
            return
        origin = headers.get("Origin")
        if origin is not None and not _same_origin(origin, host):
            raise ForbiddenError(f"cross-site {method} refused (Origin {origin[:80]!r})")
        if headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            raise ForbiddenError(f"cross-site {method} refused (Sec-Fetch-Site: cross-site)")
        media = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media in SIMPLE_TYPES or media.startswith("text/"):
            raise UnsupportedMediaTypeError(
                f"Content-Type {media!r} is not accepted for {method}; send application/json"
            )
        if self.token is not None:
            scheme, _, given = headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                     self.token.encode()):
                raise AuthenticationError(
                    f"{method} needs the server's token: send Authorization: Bearer TOKEN"
                )


def normalize_host(host: str) -> str:
    """`Host` header or name → lower-case name without port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def is_loopback(host: str) -> bool:
    import ipaddress

    name = normalize_host(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _same_origin(origin: str, host: str) -> bool:
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # includes "null" (sandboxed frames, file:// pages, some redirects)
    return parts.netloc.lower() == host.strip().lower()
