"""What `auth` comes to for a bind, and the refusal of an open API on a public one. Apart
from api/auth.py so that `serve` can check its config before anything imports the metrics
(scholarsource/metrics: prometheus-client picks its mode at first import)."""

from __future__ import annotations

from scholarsource.api.hosts import is_loopback
from scholarsource.config import Config
from scholarsource.errors import ConfigError


def mode(config: Config) -> str:
    """"keys" or "none": what `auth` comes to for this bind ("auto": none on loopback)."""
    if config.auth != "auto":
        return config.auth
    host, _ = config.host_port()
    return "none" if is_loopback(host) else "keys"


def check_bind(config: Config) -> None:
    """Refuse auth = "none" on a bind other machines reach, unless the operator said so."""
    host, _ = config.host_port()
    if mode(config) == "none" and not is_loopback(host) \
            and not config.allow_unauthenticated_remote:
        raise ConfigError(
            f"auth is none and bind {config.bind} is reachable from other machines: anyone "
            "there could read, cancel and purge every job. Set auth = \"keys\" (and create "
            "keys with `scholarsource keys create`), bind to 127.0.0.1, or set "
            "allow_unauthenticated_remote = true if the network in front really is trusted")
