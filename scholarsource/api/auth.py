"""Who is calling: `Authorization: Bearer KEY` (or the dashboard's session cookie) → Principal.

With `auth = "keys"` this middleware runs before every route. It only authenticates: it puts
the caller's Principal in the scope, or None with the reason it has none; each route's guard
(api/access.py) then decides what that caller may do there. Keys and sessions are looked up
in the store, and each API worker remembers a lookup for CACHE_SECONDS at most, so a revoked
key stops working on every worker within a second without a query per request. Nothing here
ever logs a key, a token or the Authorization header.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scholarsource import keys
from scholarsource.api.authmode import mode
from scholarsource.api.state import Services
from scholarsource.api.tenancy import PRINCIPAL_SCOPE_KEY, Principal
from scholarsource.config import Config
from scholarsource.errors import StoreUnavailable, store_unavailable
from scholarsource.keys import ApiKey
from scholarsource.limits import parse_rate
from scholarsource.metrics.counters import REJECTED

log = logging.getLogger("scholarsource.auth")

# Why a request has no principal, for the guard's 401 (never echoes what was sent).
FAILURE_SCOPE_KEY = "scholarsource.auth_failure"
SESSION_COOKIE = "scholarsource_session"
# Half a second: a revocation reaches every worker within a second, with room to spare.
CACHE_SECONDS = 0.5
# Lookups remembered per worker at most; random well-formed ids cannot grow it past this.
CACHE_MAX = 4096


class _Recent:
    """A worker's memory of recent lookups: at most CACHE_SECONDS old, CACHE_MAX entries."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}

    async def get(self, name: str, fetch: Callable[[], Awaitable[ApiKey | None]]
                  ) -> ApiKey | None:
        now = time.monotonic()
        entry = self._entries.get(name)
        if entry is not None and now - entry[0] < CACHE_SECONDS:
            return entry[1]
        value = await fetch()
        if len(self._entries) >= CACHE_MAX:
            self._entries.clear()
        self._entries[name] = (now, value)
        return value


def principal(key: ApiKey) -> Principal:
    """The principal a key acts as."""
    return Principal(tenant=key.tenant, role=key.role, key_id=key.id,
                     rate=None if key.rate is None else parse_rate(key.rate))


async def verify(text: str, find: Callable[[str], Awaitable[ApiKey | None]]) -> ApiKey | str:
    """The live key `text` is (`find` looks a key up by its id), or why it is refused."""
    key_id = keys.key_id_of(text)
    if key_id is None:
        return "a key looks like ss_<id>_<secret>, as `scholarsource keys create` prints it"
    key = await find(key_id)
    # Digests are compared even when the id found nothing: a wrong key costs what a right
    # one does.
    if not keys.matches(key, text) or key is None:
        return "the key is unknown or revoked"
    return key


class Authenticator:
    """Turns a request's credentials into a Principal, through the store and a short cache."""

    def __init__(self, services: Callable[[], Services]) -> None:
        self._services = services
        self._keys = _Recent()
        self._sessions = _Recent()

    async def key(self, text: str) -> Principal | str:
        """The principal of a key, or why it is refused."""
        store = self._services().store
        found = await verify(text, lambda key_id: self._keys.get(
            key_id, lambda: store.find_key(key_id)))
        return found if isinstance(found, str) else principal(found)

    async def session(self, token: str) -> Principal | str:
        """The principal of a dashboard session's token, or why it is refused."""
        token_digest = keys.digest(token)
        store = self._services().store
        key = await self._sessions.get(
            token_digest, lambda: store.find_session(token_digest, time.time()))
        return "the dashboard session ended; log in again" if key is None else principal(key)

    async def authenticate(self, headers: Headers) -> Principal | str | None:
        """The caller's principal; a reason when its credentials are refused; None when it
        sent none."""
        header = headers.get("authorization")
        if header is not None:
            scheme, _, text = header.partition(" ")
            if scheme.lower() != "bearer" or not text.strip():
                return "the Authorization header must be `Bearer KEY`"
            return await self.key(text.strip())
        token = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
        return await self.session(token) if token else None


class AuthMiddleware:
    """Pure ASGI (like the access log), so event streams pass through untouched, except
    that a stream whose key is revoked (or whose session ends) stops sending: before each
    later chunk its credentials are checked again, through the same short cache."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.authenticator: Authenticator | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.authenticator is None:  # the services exist once the lifespan ran
            state = scope["app"].state
            self.authenticator = Authenticator(lambda: state.services)
        authenticator, headers = self.authenticator, Headers(scope=scope)
        try:
            found = await authenticator.authenticate(headers)
        except StoreUnavailable as exc:
            # Outside the routes' exception handlers: answer here as they would.
            log.warning("store unavailable for a key lookup: %s", exc)
            error = store_unavailable()
            REJECTED.labels(error.code).inc()
            await JSONResponse(error.to_json(), status_code=error.status,
                               headers=error.headers)(scope, receive, send)
            return
        # None, not absent: a route that forgot its guard fails instead of acting as
        # tenancy.OPEN, the all-rights principal of auth = "none".
        scope[PRINCIPAL_SCOPE_KEY] = found if isinstance(found, Principal) else None
        if isinstance(found, str):
            scope[FAILURE_SCOPE_KEY] = found
        if not isinstance(found, Principal):
            await self.app(scope, receive, send)
            return
        chunks = 0
        ended = False

        async def still_valid() -> bool:
            try:
                return isinstance(await authenticator.authenticate(headers), Principal)
            except StoreUnavailable:  # a store that cannot answer revokes nothing
                return True

        async def send_while_valid(message: Message) -> None:
            nonlocal chunks, ended
            if ended:
                return  # the app's stream goes on until it sees the client leave
            if message["type"] == "http.response.body" and message.get("more_body"):
                chunks += 1
                if chunks > 1 and not await still_valid():
                    ended = True
                    message = {"type": "http.response.body", "body": b"",
                               "more_body": False}
            await send(message)

        await self.app(scope, receive, send_while_valid)


def middleware(config: Config) -> list[Middleware]:
    """The middleware when auth is "keys"; none otherwise (every request is tenancy.OPEN)."""
    return [Middleware(AuthMiddleware)] if mode(config) == "keys" else []
