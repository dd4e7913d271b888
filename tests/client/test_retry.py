"""The client sends again after no answer, a 503 or a 429, bounded, honouring Retry-After,
and never in a way that could do a request twice."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from scholarsource.client import RateLimited, RetryPolicy, Unavailable, Unreachable
from scholarsource.client.retry import retry_after
from tests.client.fakes import Script, answer, job_json, refuse


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    policy = RetryPolicy(retries=6, backoff=1.0, max_backoff=4.0)
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        wait = policy.wait(retry)
        assert wait is not None and ceiling / 2 <= wait <= ceiling
    assert policy.wait(7) is None


def test_retry_after_is_honoured_unless_too_long() -> None:
    policy = RetryPolicy(retries=2, max_retry_after=30)
    assert policy.wait(1, retry_after=12.0) == 12.0
    assert policy.wait(1, retry_after=31.0) is None  # raised at once: the caller decides
    assert policy.wait(3, retry_after=1.0) is None


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("0", 0.0), ("-3", 0.0),
                                                 ("soon", None)])
def test_retry_after_reads_seconds(header: str, seconds: float | None) -> None:
    assert retry_after(httpx.Response(429, headers={"Retry-After": header})) == seconds


def test_retry_after_reads_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    wait = retry_after(httpx.Response(503, headers={"Retry-After": when}))
    assert wait is not None and 18 <= wait <= 20


def test_a_503_then_a_success_answers_the_success() -> None:
    script = Script(answer(503, {"error": "unavailable", "message": "busy"}, **{
        "Retry-After": "0"}), answer(200, job_json("j7")))
    assert script.client().get("j7").id == "j7"
    assert len(script.requests) == 2


def test_a_429_past_the_retries_raises_rate_limited_with_retry_after() -> None:
    limited = answer(429, {"error": "rate_limited", "message": "60 a minute"},
                     **{"Retry-After": "0"})
    script = Script(*[limited] * 4)
    with pytest.raises(RateLimited) as caught:
        script.client().get("j1")
    assert (caught.value.code, caught.value.retry_after, caught.value.status) == (
        "rate_limited", 0.0, 429)
    assert len(script.requests) == 4  # the first and three retries


def test_a_retry_after_over_the_cap_is_not_waited_for() -> None:
    script = Script(answer(503, {"error": "unavailable", "message": "busy"},
                           **{"Retry-After": "3600"}))
    with pytest.raises(Unavailable) as caught:
        script.client().get("j1")
    assert caught.value.retry_after == 3600.0 and len(script.requests) == 1


def test_no_answer_is_retried_then_unreachable() -> None:
    script = Script(*[refuse()] * 4)
    with pytest.raises(Unreachable, match="cannot reach http://jobs.test"):
        script.client().get("j1")
    assert len(script.requests) == 4


def test_retries_zero_sends_once() -> None:
    script = Script(refuse())
    with pytest.raises(Unreachable):
        script.client(RetryPolicy(retries=0)).get("j1")
    assert len(script.requests) == 1


def test_a_submit_sends_one_generated_idempotency_key_on_every_try() -> None:
    script = Script(refuse(httpx.ReadError), answer(503, {"error": "unavailable",
                                                          "message": "busy"}),
                    answer(202, job_json("j9")))
    assert script.client().submit("echo", {"a": 1}).id == "j9"
    keys = {request.headers["Idempotency-Key"] for request in script.requests}
    assert len(script.requests) == 3 and len(keys) == 1
    assert keys.pop().startswith("client-")


def test_a_given_idempotency_key_is_sent_as_is() -> None:
    script = Script(answer(202))
    script.client().submit("echo", idempotency_key="order-42")
    assert script.requests[0].headers["Idempotency-Key"] == "order-42"


def test_a_request_that_may_have_been_served_is_not_resent_unless_safe() -> None:
    # retry() twice would answer 409 the second time: after a read error it is not resent.
    script = Script(refuse(httpx.ReadError))
    with pytest.raises(Unreachable):
        script.client().retry("j1")
    assert len(script.requests) == 1
    # ...but a refused connection never reached the server, so even retry() is resent.
    script = Script(refuse(httpx.ConnectError), answer(200, job_json("j1")))
    assert script.client().retry("j1").id == "j1"


def test_every_batch_item_gets_its_own_idempotency_key() -> None:
    script = Script(refuse(httpx.ReadError), answer(202, {"jobs": [job_json("a"),
                                                                   job_json("b")]}))
    jobs = script.client().submit_many([{"task": "echo"}, {"task": "echo",
                                                           "idempotency_key": "mine"}])
    assert [job.id for job in jobs] == ["a", "b"]
    first, second = script.bodies()
    assert first == second  # the retry sent the very same keys
    keys = [item["idempotency_key"] for item in first["jobs"]]
    assert keys[1] == "mine" and keys[0].startswith("client-")
