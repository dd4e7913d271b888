"""Answer only requests addressed to this server by a name it is known by.

A DNS rebinding attack points a name the attacker owns (evil.example) at 127.0.0.1: a page
from evil.example then talks to this server as its own origin, so `Origin` matches `Host`
and `Sec-Fetch-Site` says same-origin, and the cross-site guard (csrf.py) lets it through.
The `Host` header still names evil.example: refusing hosts that `allowed_hosts` does not
name closes that hole. On a loopback bind the loopback names are allowed by default; any
other bind must list its names (serve refuses to start otherwise), or "*" behind a proxy
that checks Host itself.
"""

from __future__ import annotations

import ipaddress

from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from scholarsource.config import Config
from scholarsource.errors import ConfigError, HostNotAllowed

ANY = "*"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
# Host values seen and allowed, remembered so that most requests cost one set lookup.
_KNOWN_MAX = 256


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split(value: str) -> tuple[str, str | None]:
    """`name[:port]` (IPv6 in brackets) → lowercased name, port or None."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name += "]"
        return name, rest[1:] if rest.startswith(":") else None
    name, sep, port = value.rpartition(":")
    return (name, port) if sep else (value, None)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def check_bind(config: Config) -> None:
    """Refuse a bind beyond loopback without allowed_hosts: it would answer any Host."""
    host, _ = config.host_port()
    if not config.allowed_hosts and not is_loopback(host):
        raise ConfigError(
            f"bind {config.bind} is reachable from other machines, so allowed_hosts must "
            "name the host names clients use to reach this server (e.g. "
            "allowed_hosts = [\"jobs.example.com\"]), or be [\"*\"] behind a proxy that "
            "checks the Host header; otherwise a DNS rebinding page could drive the API")


def allowed_hosts(config: Config) -> frozenset[str] | None:
    """The names (and `name:port` pairs) allowed in Host; None allows any."""
    if ANY in config.allowed_hosts:
        return None
    host, _ = config.host_port()
    names = set()
    for entry in config.allowed_hosts:
        name, port = _split(entry)
        name = name.rstrip(".")
        names.add(f"{name}:{port}" if port else name)
    names.add(_bracketed(host.lower()))
    if is_loopback(host):
        names |= LOOPBACK_NAMES
    return frozenset(names)


class HostGuard:
    """Pure ASGI middleware: a request whose Host is not allowed gets 421 before any
    route. A request without Host (HTTP/1.0) is no browser's, and passes."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        # Imported here: serve() imports this module for check_bind before it chooses the
        # metrics directory, which must come before prometheus_client's import.
        from scholarsource.metrics.counters import REJECTED

        self.app = app
        self.allowed = allowed
        self._known: set[bytes] = set()
        self._rejected = REJECTED.labels(HostNotAllowed.code)

    def _allows(self, raw: bytes) -> bool:
        if raw in self._known:
            return True
        name, port = _split(raw.decode("latin-1"))
        name = name.rstrip(".")  # "localhost." is localhost
        ok = name in self.allowed or (port is not None and f"{name}:{port}" in self.allowed)
        if ok and len(self._known) < _KNOWN_MAX:
            self._known.add(raw)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for key, value in scope["headers"]:
                if key == b"host":
                    if not self._allows(value):
                        self._rejected.inc()
                        shown = value.decode("latin-1")[:100]
                        error = HostNotAllowed(f"this server does not answer for Host {shown!r}"
                                               " (see allowed_hosts)")
                        response = JSONResponse(error.to_json(), status_code=error.status)
                        await response(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


def middleware(config: Config) -> list[Middleware]:
    """The guard as Starlette middleware; none when allowed_hosts is "*"."""
    allowed = allowed_hosts(config)
    return [] if allowed is None else [Middleware(HostGuard, allowed=allowed)]
