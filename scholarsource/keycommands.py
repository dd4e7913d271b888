"""`scholarsource keys create | list | revoke`: API keys, straight on the configured store.

Like `migrate-to`, these open the store themselves, so they work with the server stopped (the
first admin key is made before the first start). A key is printed once, by `create`, and
never again: the store keeps only its digest.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from scholarsource import keys
from scholarsource.config import Config
from scholarsource.errors import ConfigError, ScholarSourceError
from scholarsource.exitcodes import EXIT_CONFIG, EXIT_FAILURE
from scholarsource.keys import ApiKey
from scholarsource.limits import NAME_PATTERN, parse_rate
from scholarsource.store.base import DEFAULT_TENANT, Store
from scholarsource.store.factory import migrate_unless_served
from scholarsource.storecommand import on_store


def admin_hint(config: Config) -> str | None:
    """What `serve` says when auth = "keys" and no live admin key exists yet: the command
    that makes one; None when there is one."""

    async def live_admins(store: Store) -> int:
        return sum(key.live and key.role == "admin" for key in await store.list_keys())

    if on_store(config, live_admins):
        return None
    store_flag = "" if config.database.is_postgres else f" --data-dir {config.data_dir}"
    return (f"auth is keys and there is no admin key yet: every request will get 401. "
            f"Create one (with the same config as serve) and keep what it prints: "
            f"scholarsource keys create --tenant {DEFAULT_TENANT} --role admin "
            f"--name admin{store_flag}")


def _tenant(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise click.BadParameter("1-64 letters, digits, '_', '.', ':' or '-', starting with "
                                 "a letter or digit")
    return value


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(parse_rate(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _row(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "tenant": key.tenant, "role": key.role, "name": key.name,
            "rate": key.rate, "created_at": key.created_at, "revoked_at": key.revoked_at}


@click.group("keys")
def keys_group() -> None:
    """Create, list and revoke API keys (auth = "keys")."""


def _server_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    # Imported here: cli.py imports this module to add its group.
    from scholarsource.cli import server_options

    return server_options(fn)


@keys_group.command("create")
@click.option("--tenant", required=True, callback=_tenant, help="The tenant the key acts for.")
@click.option("--name", default="", help="A label for `keys list` (who or what holds it).")
@click.option("--role", type=click.Choice(keys.ROLES), default="submit", show_default=True,
              help="read: the tenant's jobs, events, stats; submit: also submit, cancel, "
                   "retry; admin: everything, for every tenant.")
@click.option("--rate", callback=_rate, metavar="N/UNIT",
              help='The key\'s own submit rate, e.g. "60/m" (besides its tenant\'s).')
@_server_options
def create(tenant: str, name: str, role: keys.Role, rate: str | None,
           config_file: str | None, **flags: Any) -> None:
    """Make a key and print it, once: it cannot be shown again."""
    from scholarsource.cli import build_config

    config = build_config(config_file, **flags)
    try:
        migrate_unless_served(config)  # a first key may come before the first `serve`
    except ScholarSourceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_FAILURE)
    text, key = keys.new_key(tenant, role, name, rate)
    on_store(config, lambda store: store.create_key(key))
    click.echo(f"created key {key.id} ({role} for tenant {tenant}); it is shown only now, "
               f"so keep it:", err=True)
    click.echo(text)


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_server_options
def list_keys(as_json: bool, config_file: str | None, **flags: Any) -> None:
    """List the keys (ids, tenants, roles; never the keys themselves)."""
    from scholarsource.cli import build_config

    config = build_config(config_file, **flags)
    found = on_store(config, lambda store: store.list_keys())
    if as_json:
        click.echo(json.dumps([_row(key) for key in found], indent=2))
        return
    click.echo(f"{'ID':<13} {'TENANT':<16} {'ROLE':<7} {'RATE':<8} {'STATE':<8} NAME")
    for key in found:
        state = "live" if key.live else "revoked"
        click.echo(f"{key.id:<13} {key.tenant:<16} {key.role:<7} {key.rate or '-':<8} "
                   f"{state:<8} {key.name}")


@keys_group.command("revoke")
@click.argument("key_id")
@_server_options
def revoke(key_id: str, config_file: str | None, **flags: Any) -> None:
    """Revoke a key: within a second every API worker refuses it, and its dashboard
    sessions end."""
    from scholarsource.cli import build_config

    config = build_config(config_file, **flags)
    key = on_store(config, lambda store: store.revoke_key(key_id, time.time()))
    if key is None:
        click.echo(f"error: no key {key_id!r} (see scholarsource keys list)", err=True)
        sys.exit(EXIT_FAILURE)
    click.echo(f"revoked key {key.id} ({key.role} for tenant {key.tenant})")
