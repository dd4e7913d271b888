"""Which tenant a request acts for. Every store query the API makes is scoped by it."""

from __future__ import annotations

from starlette.requests import Request

from scholarsource.store.base import DEFAULT_TENANT


def tenant_of(request: Request) -> str:
    """The request's tenant: the one default tenant until API keys map keys to tenants."""
    return DEFAULT_TENANT
