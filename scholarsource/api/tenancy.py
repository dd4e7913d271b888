"""Who a request acts for: its principal (tenant and role). Every store query the API makes
is scoped by the principal's tenant."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from scholarsource.errors import Forbidden
from scholarsource.keys import Role
from scholarsource.limits import Rate
from scholarsource.store.base import DEFAULT_TENANT

# Where the auth layer leaves the request's principal in the ASGI scope.
PRINCIPAL_SCOPE_KEY = "scholarsource.principal"


@dataclass(frozen=True)
class Principal:
    """The caller: its tenant, its role, and (with `auth = "keys"`) the key it sent."""

    tenant: str
    role: Role
    key_id: str | None = None  # None: no key (auth = "none")
    rate: Rate | None = None  # the key's own submit rate, if it has one


# With `auth = "none"` every request acts as this one: the one default tenant, all rights.
OPEN = Principal(tenant=DEFAULT_TENANT, role="admin")


def principal_of(request: Request) -> Principal:
    """The request's principal, as the auth layer set it (OPEN when there is none)."""
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY, OPEN)
    assert isinstance(principal, Principal)
    return principal


def is_admin(request: Request) -> bool:
    """Whether the caller holds an admin key (with auth = "none", everyone does). False on an
    open route reached without a valid key, where the auth layer leaves no principal."""
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY, OPEN)
    return isinstance(principal, Principal) and principal.role == "admin"


def tenant_of(request: Request) -> str:
    """The tenant the request acts for: the principal's own, or for an admin the one a
    `?tenant=NAME` names (any other role asking for another tenant gets 403)."""
    principal = principal_of(request)
    # Most requests have no query string: skip parsing one (~2 us of a submit).
    asked = request.query_params.get("tenant") if request.scope["query_string"] else None
    if not asked or asked == principal.tenant:
        return principal.tenant
    if principal.role != "admin":
        raise Forbidden(f"a {principal.role} key acts for its own tenant only; "
                        f"?tenant= needs an admin key")
    return asked


def scope_of(request: Request) -> str | None:
    """Whose jobs a read covers: the caller's tenant (or the one an admin names with
    `?tenant=`), or None for an admin without it: every tenant (the operator's view)."""
    if is_admin(request) and not request.query_params.get("tenant"):
        return None
    return tenant_of(request)


def jobs_scope(request: Request) -> str | None:
    """Whose jobs a job read or list covers: as scope_of, but every tenant's (None) only
    for an admin key. With auth = "none" (no key) there is one tenant in practice, and its
    lists keep walking that tenant's indexes rather than a bounded window of every job."""
    if principal_of(request).key_id is None:
        return tenant_of(request)
    return scope_of(request)
