"""A box whose PostgreSQL database is gone still stops on SIGTERM in seconds: an idle pool
leaves at once instead of running its duties, each of which waits out the store's connect
timeout (found by the two-box tests, whose database was dropped before their servers
stopped: each stop took the whole graceful timeout, 35 s)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from scholarsource.api import auth
from scholarsource.store.postgres.connection import CONNECT_TIMEOUT
from tests.conftest import Server
from tests.e2e.keyring import KEYS, as_key, make_key
from tests.helpers import wait_until
from tests.pgcluster import PgCluster, drop_database, fresh_database

pytestmark = pytest.mark.e2e


def test_an_idle_box_whose_database_is_dropped_stops_within_the_connect_timeout(
        serve: Callable[..., Server], pg_cluster: PgCluster) -> None:
    url = fresh_database(pg_cluster)
    server = serve(slots=1, workers=1, env={"SCHOLARSOURCE_DATABASE": url})
    drop_database(pg_cluster, url)  # closes every session the server holds
    # Its reconnects fail (psycopg's pool retries after ~1 s, then longer): by the second
    # failure the dispatcher's turn waits for a connection that cannot come.
    wait_until(lambda: server.log().count("error connecting in 'scholarsource-pool'") >= 2,
               15, message="the pool to miss its database")
    server.signal(signal.SIGTERM)
    # A claim already waiting for a connection may take the whole connect timeout; the
    # duties after it (cancel requests, due jobs, heartbeat) took one each before the fix.
    assert server.proc.wait(timeout=CONNECT_TIMEOUT + 5) == 0
    assert "pool stopped" in server.log()


def test_a_key_checked_against_a_lost_database_gets_503_not_500(
        serve: Callable[..., Server], pg_cluster: PgCluster) -> None:
    url = fresh_database(pg_cluster)
    server = serve(slots=1, workers=1, env={"SCHOLARSOURCE_DATABASE": url, **KEYS})
    key = make_key(server, "acme")
    with as_key(server, key) as client:
        assert client.get("/api/jobs").status_code == 200
        drop_database(pg_cluster, url)
        time.sleep(auth.CACHE_SECONDS)  # past the worker's memory of the key: it looks again
        answer = wait_until(lambda: (r := client.get("/api/jobs", timeout=CONNECT_TIMEOUT + 10))
                            .status_code != 200 and r, CONNECT_TIMEOUT + 20,
                            message="the lookup to meet the lost database")
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "unavailable" and answer.headers["Retry-After"] == "1"
    assert "Traceback" not in server.log() and key not in server.log()
