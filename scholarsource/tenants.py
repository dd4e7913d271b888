"""`scholarsource tenants`: list the tenants' limits, and set them in the store, where they win
over the `[tenants.NAME]` tables of the config. Works on the configured store directly, with
the server stopped or running: every submit reads the limits in its own transaction, so the
API workers apply a change from their next submit on."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from scholarsource.config import Config
from scholarsource.limits import NAME_PATTERN, Rate, parse_rate
from scholarsource.quotas import TenantOverride
from scholarsource.store.base import Store
from scholarsource.storecommand import on_store

Options = Callable[[Callable[..., Any]], Callable[..., Any]]


async def rows(store: Store, config: Config) -> list[dict[str, Any]]:
    """Every tenant the config, the store's limits or a non-final job names: its limits in
    force, where they come from, and its jobs not yet finished."""
    limits = await store.tenant_limits(config.tenants)
    overrides = await store.tenant_overrides()
    live = await store.live_counts()
    names = sorted({*limits, *live})
    return [{"tenant": name,
             "rate": None if name not in limits or limits[name].rate is None
             else str(limits[name].rate),
             "max_queued": limits[name].max_queued if name in limits else None,
             "weight": limits[name].weight if name in limits else 1,
             "set_in_store": name in overrides, "not_finished": live.get(name, 0)}
            for name in names]


def _name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise click.BadParameter(f"{value!r} is not a tenant name (letters, digits, _.:-)")
    return value


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> Rate | None:
    if value is None:
        return None
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def tenants_group(server_options: Options, build_config: Callable[..., Config]) -> click.Group:
    """The `tenants` command group, with the CLI's shared config options."""

    @click.group()
    def tenants() -> None:
        """List tenants and set their submit limits in the store."""

    @tenants.command("list")
    @server_options
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def list_(as_json: bool, config_file: str | None, **flags: Any) -> None:
        """Each tenant's limits in force and its jobs not yet finished."""
        config = build_config(config_file, **flags)
        found = on_store(config, lambda store: rows(store, config))
        if as_json:
            click.echo(json.dumps(found, indent=2))
            return
        click.echo(f"{'tenant':<20} {'rate':>8} {'max_queued':>10} {'weight':>6} "
                   f"{'not finished':>12}  from")
        for row in found:
            click.echo(f"{row['tenant']:<20} {row['rate'] or '-':>8} "
                       f"{row['max_queued'] or '-':>10} {row['weight']:>6} "
                       f"{row['not_finished']:>12}  "
                       f"{'store' if row['set_in_store'] else 'config'}")

    @tenants.command("set")
    @click.argument("name", callback=_name)
    @click.option("--rate", callback=_rate, help='Submit rate, e.g. "1000/h", "60/m".')
    @click.option("--max-queued", type=click.IntRange(min=1),
                  help="Most jobs not yet finished.")
    @click.option("--weight", type=click.IntRange(min=1), help="Share of the slots.")
    @server_options
    def set_(name: str, rate: Rate | None, max_queued: int | None, weight: int | None,
             config_file: str | None, **flags: Any) -> None:
        """Set NAME's limits in the store (over its config table); the others stay."""
        if rate is None and max_queued is None and weight is None:
            raise click.UsageError("give at least one of --rate, --max-queued, --weight")
        from scholarsource.store.factory import where

        config = build_config(config_file, **flags)
        on_store(config, lambda store: store.set_tenant_limits(
            name, TenantOverride(rate, max_queued, weight)))
        click.echo(f"set tenant {name}'s limits in {where(config)}")

    @tenants.command("unset")
    @click.argument("name", callback=_name)
    @server_options
    def unset(name: str, config_file: str | None, **flags: Any) -> None:
        """Drop NAME's limits from the store: its config table applies again."""
        from scholarsource.store.factory import where

        config = build_config(config_file, **flags)
        dropped = on_store(config, lambda store: store.clear_tenant_limits(name))
        click.echo(f"dropped tenant {name}'s limits from {where(config)}" if dropped
                   else f"tenant {name} had no limits in {where(config)}")

    return tenants
