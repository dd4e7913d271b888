"""One request header read straight from the ASGI scope.

Starlette's `Headers.get` answers for a header the request does not carry by raising and
catching a KeyError (~1.5 us each). The submit path asks for three that most requests
leave out (Idempotency-Key, Sec-Fetch-Site, Origin), so it reads them here instead.
"""

from __future__ import annotations

from starlette.types import Scope


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lowercase, as ASGI servers deliver every name),
    or None when the request has none."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None
