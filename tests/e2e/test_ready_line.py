"""Once `serve` is ready it says where to go (issue 9 §3): the dashboard, the API and
/metrics, as URLs that answer."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import Server
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def test_serve_prints_where_to_go_once_ready(serve: Callable[..., Server]) -> None:
    server = serve(slots=1, workers=1)
    line = wait_until(lambda: re.search(r"ready: (.*)", server.log()), 10,
                      message="the ready line").group(1)
    base = server.url
    assert line == (f"dashboard {base}/dashboard, API {base}/api/jobs (described at "
                    f"{base}/api/openapi.json), metrics {base}/metrics")
    urls = re.findall(r"http://[^\s,()]+", line)
    assert len(urls) == 4
    for url in urls:
        assert httpx.get(url, timeout=10).status_code == 200, url
    assert server.log().count("ready: ") == 1
