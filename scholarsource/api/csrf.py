"""Refuse state-changing requests that a browser sends on behalf of another site.

The API listens on loopback or a private network that any web page a browser shows can
reach: without this guard, a page could cancel jobs or purge the dead letters with a form or
a `fetch()`, with auth = "none" or, with keys, riding on the dashboard's session cookie
(which SameSite=Strict also keeps off other sites' requests), or log a browser in with the
attacker's key through the login form. Browsers say where a request comes from
in `Sec-Fetch-Site` (all current ones) and `Origin` (on every POST, PUT, PATCH and DELETE);
either one is enough to refuse it. Requests with neither, from curl or another server, are
not a browser acting for someone else, so they pass.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from scholarsource.api.headers import header
from scholarsource.errors import Forbidden

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# `same-site` is a sibling origin (another port or subdomain): still someone else's page.
FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})
DEFAULT_PORTS = {"http": "80", "https": "443"}


def _origin_netloc(origin: str) -> str | None:
    """`host:port` of an Origin header, default port dropped; None for `null` or junk."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None or str(port) == DEFAULT_PORTS[parts.scheme]:
        return host
    return f"{host}:{port}"


def _host_netloc(host: str) -> str:
    """The Host header lowercased, a default port dropped (the Origin never carries one)."""
    host = host.lower()
    for port in DEFAULT_PORTS.values():
        if host.endswith(f":{port}"):
            return host[: -len(port) - 1]
    return host


def refusal(scope: Scope) -> str | None:
    """Why a state-changing request (its ASGI scope) comes from another site, or None."""
    fetch_site = header(scope, b"sec-fetch-site")
    if fetch_site in FOREIGN_FETCH_SITES:
        return f"Sec-Fetch-Site is {fetch_site}"
    origin = header(scope, b"origin")
    if origin is not None and _origin_netloc(origin) != _host_netloc(header(scope, b"host") or ""):
        return "Origin does not match Host"
    return None


class CrossSiteGuard:
    """Pure ASGI middleware (like the access log) so that event streams pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            reason = refusal(scope)
            if reason is not None:
                error = Forbidden(f"cross-site {scope['method']} refused: {reason}",
                                  code="cross_site_request")
                await JSONResponse(error.to_json(), status_code=error.status)(scope, receive,
                                                                               send)
                return
        await self.app(scope, receive, send)


def middleware() -> list[Middleware]:
    """The guard as Starlette middleware; it always runs."""
    return [Middleware(CrossSiteGuard)]
