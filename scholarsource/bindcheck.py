"""Check that `bind` can be listened on before the server creates anything.

Left to Gunicorn, a taken port costs five seconds of "Connection in use" retries and ends
with "Can't connect to": a bind failure that reads like a connect, after the data directory
was already created. Binding a throwaway socket first turns it into one clear ConfigError.
Another process can still take the port in the instant between this check and Gunicorn's
own bind; then Gunicorn's retries and message apply, as before.
"""

from __future__ import annotations

import errno
import socket

from scholarsource.config import Config
from scholarsource.errors import ConfigError


def check_bindable(config: Config) -> None:
    """Raise ConfigError, naming --bind, if `config.bind` cannot be listened on now."""
    host, port = config.host_port()
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve the host in bind {config.bind!r}: {exc.strerror}; "
                          "choose another with --bind") from None
    with socket.socket(family, kind, proto) as sock:
        # As Gunicorn does: a port whose old connections are in TIME_WAIT is free to listen on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise ConfigError(_explain(config.bind, exc)) from None


def _explain(bind: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        problem = "is already in use"
    elif exc.errno == errno.EADDRNOTAVAIL:
        problem = "is not an address of this machine"
    elif exc.errno == errno.EACCES:
        problem = "needs privileges this user lacks (ports below 1024 do)"
    else:
        problem = f"cannot be listened on ({exc.strerror})"
    return f"address {bind} {problem}; choose another with --bind"
