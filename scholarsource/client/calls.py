"""What each client method sends and how its answer reads, with no I/O: the sync and async
clients both run these `Call`s, so the two cannot drift apart."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from scholarsource.client.canvas import Canvas, workflow_body
from scholarsource.client.errors import ClientError, ServerError, error_class
from scholarsource.client.models import Job, JobPage, Workflow
from scholarsource.client.retry import retry_after

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and how to read its answer. `resend`: it is safe to send again after
    the connection broke with the request perhaps already served."""

    method: str
    path: str
    read: Callable[[Any], T]
    json: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    resend: bool = True


def new_idempotency_key() -> str:
    """A key for a submit the caller gave none: any retry of it then finds the same job."""
    return f"client-{secrets.token_urlsafe(18)}"


def _job_path(job_id: str, action: str = "") -> str:
    return f"/api/jobs/{quote(job_id, safe='')}{action}"


def _given(values: Mapping[str, Any]) -> dict[str, Any]:
    """The options the caller set; None means the server's default."""
    return {name: value for name, value in values.items() if value is not None}


def submit(task: str, params: Mapping[str, Any] | None, options: Mapping[str, Any],
           idempotency_key: str | None) -> Call[Job]:
    """POST /api/jobs, always with an Idempotency-Key."""
    body = {"task": task, "params": dict(params or {}), **_given(options)}
    return Call("POST", "/api/jobs", Job.from_json, json=body,
                headers={"Idempotency-Key": idempotency_key or new_idempotency_key()})


def submit_many(jobs: Iterable[Mapping[str, Any]]) -> Call[list[Job]]:
    """POST /api/jobs/batch; each job without an `idempotency_key` gets one, so that a
    retried batch answers with the jobs the first one made."""
    items = [{"idempotency_key": new_idempotency_key(), **_given(job)} for job in jobs]
    return Call("POST", "/api/jobs/batch",
                lambda body: [Job.from_json(job) for job in body["jobs"]],
                json={"jobs": items})


def get(job_id: str) -> Call[Job]:
    """GET /api/jobs/{id}."""
    return Call("GET", _job_path(job_id), Job.from_json)


def cancel(job_id: str) -> Call[Job]:
    """POST /api/jobs/{id}/cancel: cancelling twice ends the same, so it may be resent."""
    return Call("POST", _job_path(job_id, "/cancel"), Job.from_json)


def retry(job_id: str) -> Call[Job]:
    """POST /api/jobs/{id}/retry: not resent, as a second one would answer 409."""
    return Call("POST", _job_path(job_id, "/retry"), Job.from_json, resend=False)


def page(cursor: str | None, limit: int, filters: Mapping[str, Any]) -> Call[JobPage]:
    """GET /api/jobs: one page, newest first."""
    return Call("GET", "/api/jobs", JobPage.from_json,
                params=_given({**filters, "limit": limit, "cursor": cursor}))


def _workflow_path(workflow_id: str, action: str = "") -> str:
    return f"/api/workflows/{quote(workflow_id, safe='')}{action}"


def workflow(flow: Canvas | Mapping[str, Any]) -> Call[Workflow]:
    """POST /api/workflows with a canvas (chain, group, chord, sig) or a {"steps": ...}
    body: not resent, as a second one would make a second workflow."""
    body = workflow_body(flow) if isinstance(flow, Canvas) else dict(flow)
    return Call("POST", "/api/workflows", Workflow.from_json, json=body, resend=False)


def get_workflow(workflow_id: str) -> Call[Workflow]:
    """GET /api/workflows/{id}."""
    return Call("GET", _workflow_path(workflow_id), Workflow.from_json)


def cancel_workflow(workflow_id: str) -> Call[Workflow]:
    """POST /api/workflows/{id}/cancel: cancelling twice ends the same."""
    return Call("POST", _workflow_path(workflow_id, "/cancel"), Workflow.from_json)


def _counts(body: Any) -> dict[str, int]:
    return dict(body)


def cancel_jobs(filters: Mapping[str, Any], every: bool) -> Call[dict[str, int]]:
    """POST /api/jobs/cancel: its counts would be wrong if resent."""
    return Call("POST", "/api/jobs/cancel", _counts,
                json={**_given(filters), **({"all": True} if every else {})}, resend=False)


def retry_dead() -> Call[dict[str, int]]:
    """POST /api/dead/retry."""
    return Call("POST", "/api/dead/retry", _counts, resend=False)


def purge_dead() -> Call[dict[str, int]]:
    """DELETE /api/dead."""
    return Call("DELETE", "/api/dead", _counts, resend=False)


def request(method: str, path: str, json: Any = None,
            params: Mapping[str, Any] | None = None) -> Call[Any]:
    """Any other route, answered as its JSON; only reads are resent."""
    return Call(method.upper(), path, lambda body: body, json=json,
                params=None if params is None else dict(params),
                resend=method.upper() in {"GET", "HEAD"})


def read(call: Call[T], response: httpx.Response) -> T:
    """The call's result, or the error the answer stands for."""
    if response.is_error:
        raise error_for(response)
    try:
        return call.read(response.json())
    except (ValueError, KeyError, TypeError) as exc:
        raise ServerError(f"{response.status_code} from {response.url}: not the JSON "
                          f"expected ({exc})", status=response.status_code) from None


def error_for(response: httpx.Response) -> ClientError:
    """The exception for an error answer: its class from the status, its code and message
    from the JSON body (`{"error": code, "message": text}`)."""
    kind = error_class(response.status_code)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return kind(f"{response.status_code} from {response.url}: not a JSON answer",
                    status=response.status_code, retry_after=retry_after(response))
    return kind(str(body.get("message", "")), code=body["error"], status=response.status_code,
                body=body, retry_after=retry_after(response))
