"""Keys stay secret through a real server: a wrong key takes as long to refuse as a right one
takes to accept, and no log line (app, access, errors) ever holds a key or a session token."""

from __future__ import annotations

import random
import secrets
import statistics
import time

import pytest

from tests.e2e.keyring import KEYS, as_key, bearer, make_key

pytestmark = pytest.mark.e2e


@pytest.mark.both_backends
def test_a_wrong_key_costs_what_a_right_one_does(serve) -> None:
    server = serve(env=KEYS)
    right = make_key(server, "acme", "read")
    cases = {
        "right": right,
        "wrong secret": right[:16] + secrets.token_urlsafe(32),  # a real id
        "unknown id": f"ss_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}",
    }
    client = server.client()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases.items())
    for _ in range(150):  # interleaved, in a new order each round: drift hits all alike
        random.shuffle(order)
        for name, text in order:
            start = time.perf_counter()
            # 405 comes from the router, after the key was checked: the same work follows
            # every key, so only the check itself can differ.
            answer = client.put("/api/stats", headers=bearer(text))
            samples[name].append(time.perf_counter() - start)
            assert answer.status_code == 405
    # The lower quartile: what a request costs when no other load interferes (a loaded
    # box stretches the upper half of every case's times; the medians once differed by
    # 1.5x under a full test run beside other work). Loose on purpose: an early return or
    # an extra store query for one kind of key is what this catches.
    quartiles = {name: statistics.quantiles(values, n=4)[0]
                 for name, values in samples.items()}
    assert max(quartiles.values()) / min(quartiles.values()) < 1.33, quartiles


@pytest.mark.both_backends
def test_no_log_line_holds_a_key_or_a_session_token(serve) -> None:
    server = serve(env={**KEYS, "SCHOLARSOURCE_ACCESS_LOG": "true",
                        "SCHOLARSOURCE_LOG_LEVEL": "debug"})
    key = make_key(server, "acme", "submit")
    revoked_looking = f"ss_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    client = as_key(server, key)
    client.post("/api/jobs", json={"task": "echo", "params": {"text": "x"}})
    client.post("/api/jobs", json={"task": "no-such-task"})  # 422
    client.post("/api/jobs", content=b"{not json")  # 400
    client.get("/api/jobs/" + "x" * 22)  # 404
    client.delete("/api/dead")  # 403
    client.get("/api/jobs", headers=bearer(revoked_looking))  # 401
    client.get("/api/jobs", headers={"Authorization": f"Basic {key}"})  # malformed
    anonymous = server.client()
    login = anonymous.post("/dashboard/login", data={"key": key})
    token = login.cookies["scholarsource_session"]
    anonymous.post("/dashboard/login", data={"key": revoked_looking})  # 401
    for value in (token, "forged-token"):
        server.client().get("/api/stats", headers={"Cookie": f"scholarsource_session={value}"})
    assert server.stop() == 0
    log = server.log_path.read_text()
    assert "method=GET path=/api/stats status=200" in log  # the access log was on
    for secret in (key, key.split("_", 2)[2], revoked_looking, revoked_looking.split("_", 2)[2],
                   token, "forged-token"):
        assert secret not in log
