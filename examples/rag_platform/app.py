"""The RAG platform's own web app: what a tenant's users call. It hands the work to
ScholarSource with each user's own API key, so ScholarSource's tenants, per-key rates and
isolation apply to every user, and the app needs no checks of its own for them.

    POST /documents                      {"title": ..., "text": ...}   → 202 {"id", "status"}
    GET  /documents/{id}                 the ingestion's status, progress and result
    POST /documents/{id}/questions       {"question": ...}             → 202 {"id", "status"}
    GET  /questions/{id}                 the answer when it is ready

Users say who they are with `X-User: NAME` (a stand-in for the app's own login); users.json
(written by setup.sh) maps each name to its ScholarSource key. A 429 from ScholarSource
becomes the app's own 429 with the same Retry-After; an id of another tenant is a 404.

    SCHOLARSOURCE_URL=http://127.0.0.1:8000 RAG_USERS=users.json \\
        ../../.venv/bin/uvicorn --factory app:from_environment --port 8080
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scholarsource import AsyncClient
from scholarsource.client import ClientError, Job, NotFound, RateLimited, RetryPolicy

# A user waiting on a page should hear "try again in N s" at once, not wait it out inside
# the app: a Retry-After of any length is raised rather than slept (no-answer retries stay).
ANSWER_429_AT_ONCE = RetryPolicy(max_retry_after=0)


def _error(status: int, code: str, message: str,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status, headers=headers)


def _unknown_user() -> JSONResponse:
    return _error(401, "unauthorized", "say who you are with X-User: NAME")


def _not_found() -> JSONResponse:
    return _error(404, "not_found", "no such document or question")


def _from_scholarsource(exc: ClientError) -> JSONResponse:
    """ScholarSource's refusal as the app's answer: its status and code, Retry-After kept."""
    if isinstance(exc, NotFound):
        return _not_found()
    if isinstance(exc, RateLimited):
        wait = str(math.ceil(exc.retry_after or 1))
        return _error(429, exc.code, exc.message, {"Retry-After": wait})
    return _error(exc.status or 502, exc.code, exc.message)


def _job(job: Job) -> dict[str, Any]:
    return {"id": job.id, "task": job.task, "status": job.status.value, "final": job.final,
            "progress": job.progress, "result": job.result, "error": job.error}


class Platform:
    """One AsyncClient per user (each a connection pool with that user's key)."""

    def __init__(self, url: str, keys: Mapping[str, str]) -> None:
        self.clients = {user: AsyncClient(url, key, retry_policy=ANSWER_429_AT_ONCE)
                        for user, key in keys.items()}

    def client_for(self, request: Request) -> AsyncClient | None:
        return self.clients.get(request.headers.get("x-user", ""))

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()


async def _body(request: Request, *fields: str) -> dict[str, str] | JSONResponse:
    """The JSON body's string fields, each required and non-empty; else a 422."""
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "invalid_json", "the body must be JSON")
    if not isinstance(body, dict):
        return _error(422, "invalid_request", "the body must be a JSON object")
    for name in fields:
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            return _error(422, "invalid_request", f"{name} must be a non-empty string")
    return {name: body[name] for name in fields}


def create_app(url: str, keys: Mapping[str, str]) -> Starlette:
    """The app, calling ScholarSource at `url` with each user's key from `keys`."""
    platform = Platform(url, keys)

    async def submit_document(request: Request) -> JSONResponse:
        client = platform.client_for(request)
        if client is None:
            return _unknown_user()
        body = await _body(request, "title", "text")
        if isinstance(body, JSONResponse):
            return body
        try:
            job = await client.submit("ingest_document", body)
        except ClientError as exc:
            return _from_scholarsource(exc)
        return JSONResponse(_job(job), 202)

    async def ask(request: Request) -> JSONResponse:
        client = platform.client_for(request)
        if client is None:
            return _unknown_user()
        body = await _body(request, "question")
        if isinstance(body, JSONResponse):
            return body
        document_id = request.path_params["job_id"]
        try:
            # Through the user's key: another tenant's document is a 404 here, so a
            # question never reads an index that is not the user's tenant's.
            document = await client.get(document_id)
            if document.task != "ingest_document":
                return _not_found()
            if document.status.value != "succeeded":
                return _error(409, "not_ready", f"the document is {document.status.value}")
            job = await client.submit("answer_question", {"document_id": document_id,
                                                          "question": body["question"]})
        except ClientError as exc:
            return _from_scholarsource(exc)
        return JSONResponse(_job(job), 202)

    def show(task: str) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def endpoint(request: Request) -> JSONResponse:
            client = platform.client_for(request)
            if client is None:
                return _unknown_user()
            try:
                job = await client.get(request.path_params["job_id"])
            except ClientError as exc:
                return _from_scholarsource(exc)
            # A question's id under /documents (or the other way round) is not found there.
            return JSONResponse(_job(job)) if job.task == task else _not_found()

        return endpoint

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await platform.close()

    return Starlette(routes=[
        Route("/documents", submit_document, methods=["POST"]),
        Route("/documents/{job_id}", show("ingest_document"), methods=["GET"]),
        Route("/documents/{job_id}/questions", ask, methods=["POST"]),
        Route("/questions/{job_id}", show("answer_question"), methods=["GET"]),
    ], lifespan=lifespan)


def from_environment() -> Starlette:
    """The app for `uvicorn --factory app:from_environment`: the server from
    SCHOLARSOURCE_URL, the users' keys from the file RAG_USERS (users.json)."""
    with open(os.environ.get("RAG_USERS", "users.json")) as users:
        keys = {user: entry["key"] for user, entry in json.load(users).items()}
    return create_app(os.environ.get("SCHOLARSOURCE_URL", "http://127.0.0.1:8000"), keys)
