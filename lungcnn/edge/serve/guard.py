"""Requests from other sites: a web page the user visits must not be able to use the device.

- DNS rebinding: a page on evil.example whose name is made to resolve to 127.0.0.1 sends
  `Host: evil.example`. Only the bound address, the loopback names when it is a loopback
  address, and the names given with `--allow-host` are served (any name when bound to a
  wildcard address such as 0.0.0.0 and no --allow-host is given: use a token there).
- Cross-site POSTs: a browser sends `Origin` (and `Sec-Fetch-Site`) with them. A POST whose
  Origin is not this server itself, nor one given with `--allow-origin`, is refused.
Clients that are not browsers (curl, scripts) send neither header and are not affected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SiteGuard:
    """ASGI middleware: 400 for a foreign Host, 403 for a cross-origin unsafe request."""

    def __init__(self, app: ASGIApp, bound_host: str, allowed_hosts: tuple[str, ...] = (),
                 allowed_origins: tuple[str, ...] = ()):
        self._app = app
        self._hosts = _allowed_hosts(bound_host, allowed_hosts)
        self._origins = frozenset(origin.rstrip("/").lower() for origin in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = self._problem(scope) if scope["type"] == "http" else None
        if problem is None:
            await self._app(scope, receive, send)
            return
        status, message = problem
        await JSONResponse({"error": message}, status_code=status)(scope, receive, send)

    def _problem(self, scope: Scope) -> tuple[int, str] | None:
        headers = {key.lower(): value.decode("latin-1") for key, value in scope["headers"]}
        host = headers.get(b"host", "")
        if self._hosts is not None and host_name(host) not in self._hosts:
            return 400, ("unexpected Host header: serve with --allow-host NAME to accept "
                         "requests addressed to another name")
        if scope["method"] in _SAFE_METHODS:
            return None
        origin = headers.get(b"origin")
        if origin is not None and origin.rstrip("/").lower() not in self._origins:
            if urlsplit(origin).netloc.lower() != host.lower():
                return 403, ("cross-origin request refused: serve with --allow-origin "
                             "ORIGIN to accept requests from another site's pages")
        if headers.get(b"sec-fetch-site") == "cross-site" and origin is None:
            return 403, "cross-site request refused"
        return None


def _allowed_hosts(bound_host: str, extra: tuple[str, ...]) -> frozenset[str] | None:
    """The names a request may be addressed to; None: any (wildcard bind, no list)."""
    names = {name.lower().strip("[]") for name in extra}
    if bound_host in WILDCARD_HOSTS:
        return frozenset(names) if names else None
    names.add(bound_host.lower().strip("[]"))
    if bound_host in LOOPBACK_NAMES or bound_host.startswith("127."):
        names |= LOOPBACK_NAMES
    return frozenset(names)


def host_name(host: str) -> str:
    """The name in a Host header, without its port: `[::1]:8000` -> `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host
