"""What each route needs (no key, or a role), and the guard that enforces it.

Every route of the app is named in POLICY; `protect` refuses to build an app with a route it
does not name, so a new route cannot go out unguarded (tests/e2e/test_auth.py also tries
every one). Roles rank read < submit < admin: `read` sees its tenant's jobs, events, stats
and queues; `submit` also submits, cancels and retries them; `admin` does everything, for
any tenant (`?tenant=NAME`, see tenancy.tenant_of), and alone runs the operator's routes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from starlette.endpoints import HTTPEndpoint
from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from scholarsource.api.auth import FAILURE_SCOPE_KEY
from scholarsource.api.tenancy import PRINCIPAL_SCOPE_KEY, Principal
from scholarsource.errors import Forbidden, Unauthorized
from scholarsource.keys import Role

RANK: dict[str, int] = {"read": 0, "submit": 1, "admin": 2}
OPEN = "open"  # no key needed
ANY_METHOD = "*"  # a mount's whole subtree
LOGIN_PAGE = "/dashboard/login"

# Route path → method → what it needs.
POLICY: dict[str, dict[str, Role | str]] = {
    # Open: systemd, load balancers and `serve`'s own readiness check probe health without a
    # key; it shows them its status and version only (process ids and pool state: admin).
    "/api/health": {"GET": OPEN},
    # The dashboard's login form and its static files (scripts, styles: no data) must load
    # before there is a session; logging out ends whatever session the cookie names.
    "/dashboard/login": {"GET": OPEN, "POST": OPEN},
    "/dashboard/logout": {"POST": OPEN},
    "/dashboard/static": {ANY_METHOD: OPEN},
    "/api/jobs": {"GET": "read", "POST": "submit"},
    "/api/jobs/batch": {"POST": "submit"},
    "/api/jobs/cancel": {"POST": "submit"},
    "/api/jobs/{job_id}": {"GET": "read"},
    "/api/jobs/{job_id}/cancel": {"POST": "submit"},
    "/api/jobs/{job_id}/retry": {"POST": "submit"},
    "/api/jobs/{job_id}/events": {"GET": "read"},
    "/api/jobs/{job_id}/artifacts/{name}": {"GET": "read"},
    "/api/workflows": {"GET": "read", "POST": "submit"},
    "/api/workflows/{workflow_id}": {"GET": "read"},
    "/api/workflows/{workflow_id}/events": {"GET": "read"},
    "/api/workflows/{workflow_id}/cancel": {"POST": "submit"},
    "/api/dead/retry": {"POST": "submit"},  # the tenant's own dead letters
    "/api/dead": {"DELETE": "admin"},
    "/api/submit": {"POST": "submit"},
    "/api/status/{job_id}": {"GET": "read"},
    "/api/cancel/{job_id}": {"POST": "submit"},
    "/api/stats": {"GET": "read"},
    "/api/stats/events": {"GET": "read"},
    "/api/queues": {"GET": "read"},
    "/api/queues/{name}/pause": {"POST": "admin"},
    "/api/queues/{name}/resume": {"POST": "admin"},
    # Schedules are the operator's config (task, params): admin only, reading too.
    "/api/schedules": {"GET": "admin"},
    "/api/schedules/{name}/trigger": {"POST": "admin"},
    "/api/schedules/{name}/pause": {"POST": "admin"},
    "/api/schedules/{name}/resume": {"POST": "admin"},
    "/api/openapi.json": {"GET": "read"},
    "/metrics": {"GET": "admin"},  # every tenant's figures
    "/dashboard": {"GET": "read"},
    "/dashboard/jobs": {"GET": "read"},
    "/dashboard/jobs/{job_id}": {"GET": "read"},
    "/dashboard/dead": {"GET": "read"},
    "/dashboard/queues": {"GET": "read"},
    "/dashboard/workflows": {"GET": "read"},
    "/dashboard/workflows/{workflow_id}": {"GET": "read"},
}


def methods(route: BaseRoute) -> set[str]:
    """The methods a route answers (HEAD aside); {ANY_METHOD} for a mount."""
    if isinstance(route, Mount):
        return {ANY_METHOD}
    endpoint = getattr(route, "endpoint", None)
    if isinstance(endpoint, type) and issubclass(endpoint, HTTPEndpoint):
        return {m.upper() for m in ("get", "post", "put", "patch", "delete")
                if hasattr(endpoint, m)}
    return set(getattr(route, "methods", None) or ()) - {"HEAD"}


def _rules(route: BaseRoute) -> tuple[str, Mapping[str, Role | str]]:
    path = getattr(route, "path", None)
    rules = POLICY.get(path) if isinstance(path, str) else None
    if path is None or rules is None:
        raise RuntimeError(f"route {path!r} has no entry in api/access.py POLICY")
    missing = sorted(methods(route) - set(rules))
    if missing:
        raise RuntimeError(f"route {path} {missing} has no entry in api/access.py POLICY")
    return path, rules


class Guard:
    """Lets a request through to `app` only if its principal may use the route."""

    def __init__(self, app: ASGIApp, path: str, rules: Mapping[str, Role | str]) -> None:
        self.app = app
        self.page = path.startswith("/dashboard")
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        need = self.rules.get(method, self.rules.get(ANY_METHOD, "admin"))
        if need != OPEN:
            principal = scope.get(PRINCIPAL_SCOPE_KEY)
            if not isinstance(principal, Principal):
                if self.page:  # a browser: to the login form, not a JSON error
                    await RedirectResponse(LOGIN_PAGE, status_code=303)(scope, receive, send)
                    return
                raise Unauthorized(scope.get(FAILURE_SCOPE_KEY) or
                                   "this route needs an API key: send "
                                   "`Authorization: Bearer KEY`")
            if RANK[principal.role] < RANK[need]:
                raise Forbidden(f"a {principal.role} key may not {method} "
                                f"{scope['path']}; it needs a {need} key")
        await self.app(scope, receive, send)


def protect(routes: Sequence[BaseRoute], enforce: bool) -> list[BaseRoute]:
    """The routes, each checked against POLICY and, when `enforce` (auth = "keys"), guarded.
    A route POLICY does not name is a RuntimeError at start. Guarded routes are copies: the
    modules' own route lists stay as they are for the next app built in this process."""
    protected = []
    for route in routes:
        path, rules = _rules(route)
        if enforce and isinstance(route, Route | Mount):
            route = copy.copy(route)
            route.app = Guard(route.app, path, rules)
        protected.append(route)
    return protected
