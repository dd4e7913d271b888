"""`GET /api/jobs/{id}/events`: the job's history as Server-Sent Events, live until it ends.

Each event's `id` is its sequence number, so a client that reconnects with `Last-Event-ID`
(browsers do this by themselves) resumes exactly after the last event it saw.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from scholarsource.api.jobs import find_job
from scholarsource.api.schemas import is_count
from scholarsource.api.state import services
from scholarsource.api.tenancy import tenant_of
from scholarsource.errors import StoreUnavailable, ValidationFailed
from scholarsource.store.base import FINAL_STATES

POLL_INTERVAL = 0.25
KEEPALIVE_INTERVAL = 15.0


def _start_after(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not is_count(raw):
        raise ValidationFailed("Last-Event-ID must be an event id from this stream",
                               field="Last-Event-ID")
    return int(raw)


async def stream(request: Request) -> StreamingResponse:
    job_id = request.path_params["job_id"]
    await find_job(request, job_id)  # 404 before the stream starts
    after = _start_after(request)
    store, tenant = services(request).store, tenant_of(request)

    async def events() -> AsyncIterator[str]:
        nonlocal after
        quiet_since = time.monotonic()
        while True:
            try:
                job = await store.get(tenant, job_id)
                batch = await store.events(tenant, job_id, after)
            except StoreUnavailable:
                # The headers are sent, so a 503 is no longer possible: read again shortly,
                # with keep-alives telling the client the stream is still there.
                job, batch = None, []
            for event in batch:
                after = event.seq
                data = event.data
                if event.kind == "state":  # so that no client keeps a list of final states
                    data = {**data, "final": data["status"] in FINAL_STATES}
                payload = json.dumps({"job_id": event.job_id, "at": event.at, **data})
                yield f"id: {event.seq}\nevent: {event.kind}\ndata: {payload}\n\n"
            if batch:
                quiet_since = time.monotonic()
                continue
            if job is not None and job.status.final:
                return
            if time.monotonic() - quiet_since > KEEPALIVE_INTERVAL:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(POLL_INTERVAL)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


routes = [Route("/api/jobs/{job_id}/events", stream, methods=["GET"])]
