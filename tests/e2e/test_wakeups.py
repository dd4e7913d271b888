"""The store's wake-up, end to end: with polling all but off, a submit still starts at once
because the API worker's store.wake() reaches the pool's store.listen()."""

from __future__ import annotations

import pytest

from tests.e2e.jobs_api import submit, wait_finished

pytestmark = pytest.mark.e2e


def test_a_submit_wakes_an_idle_pool_that_would_poll_only_every_30_seconds(serve) -> None:
    client = serve(slots=1, env={"SCHOLARSOURCE_POLL_INTERVAL": "30"}).client()
    for _ in range(3):  # each after the pool has gone back to its 30 s sleep
        job = submit(client, "noop")
        assert wait_finished(client, job["id"], timeout=10)["status"] == "succeeded"
