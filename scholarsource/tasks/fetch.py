"""The HTTP GET behind the built-in `fetch` task, guarded against private networks.

Any API client can name `fetch` and a URL, so without a guard the server would reach, on
a client's behalf, whatever the box can reach: the cloud metadata address, the loopback
admin port, the office network. By default every hop (each redirect too) is resolved once,
every address it resolves to must be public, and the connection goes to one of exactly those
addresses: the URL carries the vetted IP, while the Host header and the TLS server name (SNI,
and so the certificate check) keep the name. Letting the connection resolve the name again
would let a DNS answer that changes between the two lookups (rebinding) send the request to
127.0.0.1 after the check passed. `fetch_allow_private = true` lifts the guard for trusted
setups.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urljoin

import httpx

# The pool exports the setting here for its slots, which do not load the config.
ENV_ALLOW_PRIVATE = "SCHOLARSOURCE_FETCH_ALLOW_PRIVATE"
MAX_REDIRECTS = 5
_HEADERS = ("content-type", "content-length", "last-modified", "etag", "server")
# IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64 (RFC 6052) and the
# deprecated IPv4-compatible form (::a.b.c.d). Python calls some of these global whatever the
# IPv4 inside, yet a connection to them can end up at that IPv4.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# RFC 8215 local-use NAT64: translated by the operator's own gateway, never global.
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchRefused(Exception):
    """Raised when a URL leads to an address that fetch may not reach."""


def _allow_private() -> bool:
    return os.environ.get(ENV_ALLOW_PRIVATE, "").lower() in {"1", "true", "yes", "on"}


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: mapped, IPv4-compatible, NAT64, 6to4
    and Teredo (its server and its client)."""
    found = [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour) if v4 is not None]
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def is_public(ip: _IPAddress) -> bool:
    """Whether fetch may connect to `ip`: a global unicast address that does not carry a
    private, loopback or otherwise non-global IPv4 inside it."""
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        return ip not in _NAT64_LOCAL and all(is_public(v4) for v4 in _embedded_ipv4(ip))
    return True


def _check_address(address: str, host: str) -> None:
    ip = ipaddress.ip_address(address.split("%")[0])
    if not is_public(ip):
        raise FetchRefused(f"{host} is {ip}, not a public address "
                           f"(fetch_allow_private = true allows it)")


def _vetted_addresses(url: httpx.URL) -> list[str]:
    """Resolve `url`'s host once; every address must be public, or none is used."""
    if url.scheme not in ("http", "https"):
        raise FetchRefused(f"only http and https URLs can be fetched, not {url.scheme!r}")
    try:
        infos = socket.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchRefused(f"cannot resolve {url.host}: {exc.strerror}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        _check_address(address, url.host)
    return addresses


@contextmanager
def _open(client: httpx.Client, url: httpx.URL, guarded: bool) -> Iterator[httpx.Response]:
    """Stream a GET of `url`; guarded, to one of its vetted addresses (each tried in turn
    while the connection fails, as a plain connect would)."""
    if not guarded:
        with client.stream("GET", url) as response:
            yield response
        return
    addresses = _vetted_addresses(url)
    headers = {"Host": url.netloc.decode("ascii")}
    for index, address in enumerate(addresses):
        pinned = url.copy_with(host=address)
        request = client.build_request("GET", pinned, headers=headers,
                                       extensions={"sni_hostname": url.raw_host.decode("ascii")})
        try:
            response = client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            if index == len(addresses) - 1:
                raise
            continue
        try:
            yield response
        finally:
            response.close()
        return


def get(url: str, timeout: float, max_bytes: int,
        should_stop: Callable[[], bool]) -> dict[str, Any]:
    """GET `url`, following up to MAX_REDIRECTS redirects: status, some headers, size."""
    guarded = not _allow_private()
    target = httpx.URL(url)
    # No kept-alive connections: a pinned connection is made for one name, and must not carry
    # a redirect to another name that happens to resolve to the same address.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False,
                      limits=limits) as client:
        for _ in range(MAX_REDIRECTS + 1):
            with _open(client, target, guarded) as response:
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
