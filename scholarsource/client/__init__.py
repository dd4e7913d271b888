"""The Python client for a ScholarSource server: `Client` (blocking) and `AsyncClient`.

    from scholarsource import Client
    jobs = Client("http://127.0.0.1:8000", api_key=os.environ.get("SCHOLARSOURCE_API_KEY"))
    job = jobs.submit("echo", {"text": "hi"}); done = jobs.wait(job.id, timeout=60)
    run = jobs.workflow(chain(sig("fetch", {"url": u}), sig("echo")))  # see client.canvas

Errors are exceptions that carry the server's error code (see `errors`); requests that got
no answer, a 503 or a 429 are sent again, bounded, without ever making a second job.
"""

from scholarsource.client.aio import AsyncClient
from scholarsource.client.canvas import Signature, chain, chord, group, sig
from scholarsource.client.errors import (
    ClientError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    Unavailable,
    Unreachable,
    WaitTimeout,
)
from scholarsource.client.models import Event, Job, JobPage, JobState, Workflow
from scholarsource.client.retry import RetryPolicy
from scholarsource.client.sync import Client

__all__ = ["AsyncClient", "Client", "ClientError", "Conflict", "Event", "Forbidden",
           "InvalidRequest", "Job", "JobPage", "JobState", "NotFound", "RateLimited",
           "RetryPolicy", "ServerError", "Signature", "Unauthorized", "Unavailable",
           "Unreachable", "WaitTimeout", "Workflow", "chain", "chord", "group", "sig"]
