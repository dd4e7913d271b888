"""The dashboard's login: a key asked for once, then a session cookie.

The form posts the key; a live one starts a session in the store (only the token's digest is
kept, with an expiry, and revoking the key ends it), so it holds on every API worker. The
cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it) and
Secure with `secure_cookies`: the server speaks plain HTTP, so TLS means a proxy in front,
and the scheme a request claims (X-Forwarded-Proto, which uvicorn applies from loopback
peers) is not trusted to say so. A state-changing request from another site is also
refused by api/csrf.py, which covers this form: no page elsewhere can log a browser in.
"""

from __future__ import annotations

import time
from string import Template
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from scholarsource import keys
from scholarsource.api import auth, authmode
from scholarsource.api.access import LOGIN_PAGE
from scholarsource.api.state import services
from scholarsource.dashboard.routes import SECURITY_HEADERS, template

HOME = "/dashboard"
# A key is 59 characters; a login body has no reason to be longer than this.
MAX_FORM_BYTES = 4096


def _page(message: str, status: int, error: bool = False) -> HTMLResponse:
    body = Template(template("login.html")).substitute(
        message=message, status="flash error" if error else "hint")
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


async def _form_key(request: Request) -> str:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return ""
    values = parse_qs(body.decode("utf-8", "replace"))
    return values.get("key", [""])[0].strip()


async def form(request: Request) -> Response:
    if authmode.mode(services(request).config) == "none":
        return RedirectResponse(HOME, status_code=303)
    return _page("Paste an API key (scholarsource keys create prints one).", 200)


async def login(request: Request) -> Response:
    svc = services(request)
    if authmode.mode(svc.config) == "none":
        return RedirectResponse(HOME, status_code=303)
    found = await auth.verify(await _form_key(request), svc.store.find_key)
    if isinstance(found, str):
        return _page("That key is unknown or revoked.", 401, error=True)
    token, now = keys.new_session_token(), time.time()
    await svc.store.create_session(keys.digest(token), found.id, now + svc.config.session_ttl,
                                   now)
    response = RedirectResponse(HOME, status_code=303)
    response.set_cookie(auth.SESSION_COOKIE, token, max_age=int(svc.config.session_ttl),
                        path="/", httponly=True, samesite="strict",
                        secure=svc.config.secure_cookies)
    return response


async def logout(request: Request) -> Response:
    token = request.cookies.get(auth.SESSION_COOKIE)
    if token:
        await services(request).store.end_session(keys.digest(token))
    response = RedirectResponse(LOGIN_PAGE, status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


routes = [
    Route(LOGIN_PAGE, form, methods=["GET"]),
    Route(LOGIN_PAGE, login, methods=["POST"]),
    Route("/dashboard/logout", logout, methods=["POST"]),
]
