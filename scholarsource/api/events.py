"""`GET /api/jobs/{id}/events`: the job's history as Server-Sent Events, live until it ends.

Each event's `id` is its sequence number, so a client that reconnects with `Last-Event-ID`
(browsers do this by themselves) resumes exactly after the last event it saw.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from scholarsource.api.jobs import find_job
from scholarsource.api.schemas import is_count
from scholarsource.api.state import services
from scholarsource.errors import ValidationFailed
from scholarsource.store.base import FINAL_STATES, Event

KEEPALIVE_INTERVAL = 15.0


def start_after(request: Request) -> int:
    """Where a stream resumes: Last-Event-ID (or ?after=), 0 for the whole history."""
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not is_count(raw):
        raise ValidationFailed("Last-Event-ID must be an event id from this stream",
                               field="Last-Event-ID")
    return int(raw)


async def stream(request: Request) -> StreamingResponse:
    job_id = request.path_params["job_id"]
    job = await find_job(request, job_id)  # 404 before the stream starts
    after = start_after(request)
    reader = services(request).reader

    async def events() -> AsyncIterator[str]:
        # The worker's one reader fills the feed (api/fanout.py); a feed whose client fell
        # too far behind closes after what it holds, and the client resumes from there.
        feed = reader.subscribe(job.tenant, job_id, after)
        try:
            while True:
                batch = await feed.take(KEEPALIVE_INTERVAL)
                for event in batch:
                    yield frame(event)
                if feed.closed and not batch:
                    if feed.dropped:  # a comment: clients ignore it, a person reading sees why
                        yield ": behind: resume with Last-Event-ID\n\n"
                    return
                if not batch:
                    yield ": keep-alive\n\n"
        finally:
            reader.unsubscribe(feed)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def frame(event: Event, **extra: Any) -> str:
    """One event as an SSE frame; `extra` fields join its data (a workflow's step)."""
    data = event.data
    if event.kind == "state":  # so that no client keeps a list of final states
        data = {**data, "final": data["status"] in FINAL_STATES}
    payload = json.dumps({"job_id": event.job_id, **extra, "at": event.at, **data})
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {payload}\n\n"


routes = [Route("/api/jobs/{job_id}/events", stream, methods=["GET"])]
