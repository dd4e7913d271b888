"""What each API worker holds for its life: config, store, task catalog and submits."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from scholarsource.api.catalog import Catalog
from scholarsource.api.fanout import EventReader
from scholarsource.api.submits import SubmitBatcher
from scholarsource.config import Config
from scholarsource.store.base import Store


@dataclass
class Services:
    """Per-worker services, opened in the app's lifespan."""

    config: Config
    store: Store
    catalog: Catalog
    submits: SubmitBatcher
    reader: EventReader  # the one reader of job events behind every SSE stream
    api_workers: int = 0  # how many API workers the master was sized to run


def services(request: Request) -> Services:
    """The services of the worker serving `request`."""
    svc: Services = request.app.state.services
    return svc
