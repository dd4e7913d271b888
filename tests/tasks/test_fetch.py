"""The fetch guard connects only to addresses it vetted, and refuses IPv6 forms of private
IPv4 addresses.

The rebinding tests script the resolver in-process: the first answer for a name is public,
every later one 127.0.0.1, where a listener stands that must never see a connection. A
"network" maps the public address to a local HTTP server, so a request that went where the
guard said it would gets a real answer.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from scholarsource.tasks import fetch

# Global addresses; the test network routes them to local ports.
PUBLIC = "93.184.215.14"
DOWN = "93.184.215.15"


class Public(ThreadingHTTPServer):
    """The web server behind PUBLIC; `hosts` lists each request's Host header."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.hosts: list[str] = []


class _Recorder(BaseHTTPRequestHandler):
    """Answers 200, or a redirect to the path's /to/<url>; records each request's Host."""

    server: Public

    def do_GET(self) -> None:
        self.server.hosts.append(self.headers["Host"])
        if self.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/to/"):])
        else:
            self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def internal() -> Iterator[socket.socket]:
    """A listener on 127.0.0.1 that must never be reached (never accepted: a connection
    would wait in its backlog, where `reached` finds it without any timing)."""
    listener = socket.create_server(("127.0.0.1", 0))
    yield listener
    listener.close()


def reached(listener: socket.socket) -> bool:
    listener.setblocking(False)
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Routes: a dial to one of these addresses, on any port, reaches this local port."""
    routes: dict[str, int] = {}
    real_connect = socket.create_connection

    def connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        if address[0] in routes:
            address = ("127.0.0.1", routes[address[0]])
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", connect)
    return routes


@pytest.fixture
def public(network: dict[str, int]) -> Iterator[Public]:
    """The HTTP server behind PUBLIC, serving."""
    server = Public()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    network[PUBLIC] = server.server_address[1]
    yield server
    server.shutdown()
    server.server_close()


class Resolver:
    """A resolver to script: each name gets a list of answers (each one or more addresses),
    the last one repeated; other names resolve as usual. Records each lookup it answers."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[str, ...]]] = {}
        self.lookups: list[str] = []

    def script(self, name: str, *answers: str | tuple[str, ...]) -> None:
        self.answers[name] = [(a,) if isinstance(a, str) else a for a in answers]

    def answer(self, host: str, port: int | None) -> list[Any]:
        self.lookups.append(host)
        script = self.answers[host]
        addresses = script.pop(0) if len(script) > 1 else script[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 80)) for a in addresses]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    scripted = Resolver()
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in scripted.answers:
            return scripted.answer(host, port)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.delenv(fetch.ENV_ALLOW_PRIVATE, raising=False)
    return scripted


def get(url: str) -> dict[str, Any]:
    return fetch.get(url, timeout=5, max_bytes=1000, should_stop=lambda: False)


def test_a_name_that_rebinds_to_loopback_is_fetched_from_the_address_that_was_checked(
        internal: socket.socket, public: Public,
        resolver: Resolver) -> None:
    port = internal.getsockname()[1]
    resolver.script("rebind.test", PUBLIC, "127.0.0.1")
    result = get(f"http://rebind.test:{port}/page")
    assert (result["status"], result["url"]) == (200, f"http://rebind.test:{port}/page")
    assert public.hosts == [f"rebind.test:{port}"]
    assert resolver.lookups == ["rebind.test"]  # resolved once, never again
    assert not reached(internal)


def test_each_redirect_hop_is_resolved_checked_and_pinned(
        internal: socket.socket, public: Public,
        resolver: Resolver) -> None:
    port = internal.getsockname()[1]
    resolver.script("first.test", PUBLIC, "127.0.0.1")
    resolver.script("second.test", PUBLIC, "127.0.0.1")
    result = get(f"http://first.test:{port}/to/http://second.test:{port}/end")
    assert (result["status"], result["url"]) == (200, f"http://second.test:{port}/end")
    assert public.hosts == [f"first.test:{port}", f"second.test:{port}"]
    assert not reached(internal)

    resolver.script("first.test", PUBLIC, "127.0.0.1")
    resolver.script("inside.test", "127.0.0.1")
    with pytest.raises(fetch.FetchRefused, match="inside.test is 127.0.0.1"):
        get(f"http://first.test:{port}/to/http://inside.test:{port}/")
    assert not reached(internal)


def test_a_name_with_one_private_address_among_public_ones_is_refused(
        internal: socket.socket, resolver: Resolver) -> None:
    resolver.script("both.test", (PUBLIC, "127.0.0.1"))
    with pytest.raises(fetch.FetchRefused, match="both.test is 127.0.0.1"):
        get(f"http://both.test:{internal.getsockname()[1]}/")
    assert not reached(internal)


def test_the_next_vetted_address_is_tried_when_one_refuses_the_connection(
        internal: socket.socket, public: Public, network: dict[str, int],
        resolver: Resolver) -> None:
    with socket.socket() as closed:  # bound, not listening: a connection is refused
        closed.bind(("127.0.0.1", 0))
        network[DOWN] = closed.getsockname()[1]
        resolver.script("two.test", (DOWN, PUBLIC), "127.0.0.1")
        assert get(f"http://two.test:{internal.getsockname()[1]}/")["status"] == 200
    assert len(public.hosts) == 1 and not reached(internal)


def test_https_to_the_pinned_address_still_names_the_host_to_tls(
        network: dict[str, int], resolver: Resolver) -> None:
    """The TLS server name (and so the certificate check) stays the host's, not the IP's."""
    tls = socket.create_server(("127.0.0.1", 0))
    network[PUBLIC] = tls.getsockname()[1]
    hello: list[bytes] = []

    def read_hello() -> None:
        conn, _ = tls.accept()
        with conn:
            hello.append(conn.recv(65536))  # the ClientHello; closing then fails the handshake

    reader = threading.Thread(target=read_hello)
    reader.start()
    resolver.script("tls.test", PUBLIC)
    with pytest.raises(httpx.HTTPError):
        get("https://tls.test/")
    reader.join(5)
    tls.close()
    assert hello and b"tls.test" in hello[0] and PUBLIC.encode() not in hello[0]


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.0.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1",
    "::1", "::", "fe80::1", "fc00::1",
    "::127.0.0.1", "::10.0.0.1",                            # IPv4-compatible
    "::ffff:127.0.0.1", "::ffff:169.254.169.254",           # IPv4-mapped
    "64:ff9b::127.0.0.1", "64:ff9b::10.1.2.3",              # NAT64
    "64:ff9b:1::808:808",                                   # local-use NAT64
    "2002:7f00:1::", "2002:a00:1::1",                       # 6to4 of 127.0.0.1, 10.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",                 # Teredo, client 127.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",                 # Teredo, client 192.0.2.45
])
def test_private_addresses_and_ipv6_forms_that_embed_them_are_refused(address: str) -> None:
    assert not fetch.is_public(ipaddress.ip_address(address))
    with pytest.raises(fetch.FetchRefused, match="not a public address"):
        fetch._check_address(address, "host.test")


@pytest.mark.parametrize("address", [
    "8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:808:808::1",
])
def test_public_addresses_and_embeddings_of_public_ones_pass(address: str) -> None:
    assert fetch.is_public(ipaddress.ip_address(address))
