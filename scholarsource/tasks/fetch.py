"""The HTTP GET behind the built-in `fetch` task, guarded against private networks.

Any API client can name `fetch` and a URL, so without a guard the server would reach, on
a client's behalf, whatever the box can reach: the cloud metadata address, the loopback
admin port, the office network. By default every hop (each redirect too) must resolve to
public addresses only, and the address actually connected to is checked again before any
of the answer is read. `fetch_allow_private = true` lifts this for trusted setups.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

import httpx

# The pool exports the setting here for its slots, which do not load the config.
ENV_ALLOW_PRIVATE = "SCHOLARSOURCE_FETCH_ALLOW_PRIVATE"
MAX_REDIRECTS = 5
_HEADERS = ("content-type", "content-length", "last-modified", "etag", "server")


class FetchRefused(Exception):
    """Raised when a URL leads to an address that fetch may not reach."""


def _allow_private() -> bool:
    return os.environ.get(ENV_ALLOW_PRIVATE, "").lower() in {"1", "true", "yes", "on"}


def _check_address(address: str, host: str) -> None:
    ip = ipaddress.ip_address(address.split("%")[0])
    if not ip.is_global:
        raise FetchRefused(f"{host} is {ip}, not a public address "
                           f"(fetch_allow_private = true allows it)")


def _check_host(url: httpx.URL) -> None:
    if url.scheme not in ("http", "https"):
        raise FetchRefused(f"only http and https URLs can be fetched, not {url.scheme!r}")
    try:
        infos = socket.getaddrinfo(url.host, url.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchRefused(f"cannot resolve {url.host}: {exc.strerror}") from None
    for info in infos:
        _check_address(str(info[4][0]), url.host)


def get(url: str, timeout: float, max_bytes: int,
        should_stop: Callable[[], bool]) -> dict[str, Any]:
    """GET `url`, following up to MAX_REDIRECTS redirects: status, some headers, size."""
    guarded = not _allow_private()
    target = httpx.URL(url)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            if guarded:
                _check_host(target)
            with client.stream("GET", target) as response:
                stream = response.extensions.get("network_stream")
                peer = stream.get_extra_info("server_addr") if stream else None
                if guarded and peer:  # the address really connected to, after any DNS trick
                    _check_address(str(peer[0]), target.host)
                location = response.headers.get("location")
                if response.is_redirect and location:
                    target = httpx.URL(urljoin(str(target), location))
                    continue
                size, truncated = 0, False
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes or should_stop():
                        truncated = True
                        break
                return {"url": str(target), "status": response.status_code,
                        "headers": {k: response.headers[k] for k in _HEADERS
                                    if k in response.headers},
                        "bytes": min(size, max_bytes), "truncated": truncated}
    raise FetchRefused(f"more than {MAX_REDIRECTS} redirects")
