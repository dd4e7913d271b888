"""Errors arrive as exceptions that carry the server's code and message, and the API key is
sent as a bearer token but never shown."""

from __future__ import annotations

import httpx
import pytest

from scholarsource.client import (
    ClientError,
    Conflict,
    Forbidden,
    InvalidRequest,
    Job,
    JobState,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    Unavailable,
)
from tests.client.fakes import FAST, Script, answer, job_json


@pytest.mark.parametrize(("status", "code", "kind"), [
    (400, "malformed_json", InvalidRequest), (401, "unauthorized", Unauthorized),
    (403, "forbidden", Forbidden), (404, "not_found", NotFound),
    (409, "already_finished", Conflict), (413, "payload_too_large", InvalidRequest),
    (422, "unknown_task", InvalidRequest), (429, "quota_exceeded", RateLimited),
    (500, "internal_error", ServerError), (503, "unavailable", Unavailable)])
def test_each_status_is_its_exception_with_the_servers_code(status: int, code: str,
                                                             kind: type[ClientError]) -> None:
    body = {"error": code, "message": "what went wrong", "field": "task"}
    script = Script(*[answer(status, body)] * 4)
    with pytest.raises(kind) as caught:
        script.client().cancel("j1")
    error = caught.value
    assert (error.code, error.message, error.status) == (code, "what went wrong", status)
    assert error.body["field"] == "task" and str(error) == f"{code}: what went wrong"


def test_an_answer_that_is_not_json_is_still_a_clear_error() -> None:
    script = Script(lambda request: httpx.Response(502, text="<html>bad gateway"))
    with pytest.raises(ServerError, match="502 from http://jobs.test/api/jobs/j1: not a JSON"):
        script.client().get("j1")


def test_a_job_reads_into_its_typed_fields_and_keeps_new_ones_raw() -> None:
    body = job_json(status="succeeded", result={"n": 1}, attempts=1, from_the_future=True)
    job = Job.from_json(body)
    assert (job.status, job.final, job.result, job.attempts) == (
        JobState.SUCCEEDED, True, {"n": 1}, 1)
    assert job.raw["from_the_future"] is True


def test_the_api_key_is_a_bearer_token_and_never_in_a_repr() -> None:
    script = Script(answer(200))
    with script.client(api_key="sk-live-secret") as client:
        client.get("j1")
        assert "sk-live-secret" not in repr(client)
        assert repr(client) == "Client('http://jobs.test', api_key='********')"
    assert script.requests[0].headers["Authorization"] == "Bearer sk-live-secret"
    assert "sk-live-secret" not in repr(script.requests[0].headers)


def test_no_key_sends_no_authorization() -> None:
    script = Script(answer(200))
    script.client(FAST).get("j1")
    assert "Authorization" not in script.requests[0].headers


def test_job_ids_are_quoted_into_the_path() -> None:
    script = Script(answer(200))
    script.client().get("../dead")
    assert script.requests[0].url.raw_path == b"/api/jobs/..%2Fdead"


@pytest.mark.parametrize("key", ["sk-line\nbreak", "sk-sp ace", "sk-\u00e9"])
def test_a_malformed_key_is_refused_at_once_without_showing_it(key: str) -> None:
    with pytest.raises(ValueError) as caught:
        Script().client(api_key=key)
    assert key not in str(caught.value) and "sk-" not in str(caught.value)
