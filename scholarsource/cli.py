"""The `scholarsource` command: parse, build the Config, call one function."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from scholarsource import __version__
from scholarsource.bench.command import bench
from scholarsource.config import Config, load_config, parse_duration
from scholarsource.errors import ConfigError, ScholarSourceError
from scholarsource.exitcodes import (
    EXIT_CONFIG,
    EXIT_DATA_DIR_IN_USE,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNHEALTHY,
)
from scholarsource.remote_commands import client_commands
from scholarsource.tenants import tenants_group


def server_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The flags every command that builds a Config shares."""
    options = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False),
                     help="TOML config file (also SCHOLARSOURCE_CONFIG)."),
        click.option("--bind", help="HOST:PORT to listen on."),
        click.option("--data-dir", help="Directory for the database."),
        click.option("--workers", type=int, help="API worker processes (0: one per core)."),
        click.option("--slots", type=int, help="Job slots (0: size from CPU and RAM)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_config(config_file: str | None, **flags: Any) -> Config:
    """Config from every layer, or a clean exit with EXIT_CONFIG."""
    try:
        return load_config(config_file, overrides=flags)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _start_dir_on_path() -> None:
    """Make modules in the directory `serve` starts in importable, as Gunicorn and Uvicorn
    do: the `scholarsource` script, unlike `python -m`, does not put it on sys.path. The
    API workers and the pool inherit sys.path across fork; the slots' forkserver is a fresh
    interpreter, and multiprocessing hands it the pool's sys.path with its preload list."""
    start = os.getcwd()
    if start not in sys.path:
        sys.path.insert(0, start)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """ScholarSource: a job server for one big machine."""


@main.command()
@server_options
def serve(config_file: str | None, **flags: Any) -> None:
    """Run the API, the job pool and the queue in the foreground."""
    from scholarsource.server import serve as run_server

    config = build_config(config_file, **flags)
    _start_dir_on_path()
    try:
        run_server(config, lambda: load_config(config_file, overrides=flags))
    except ScholarSourceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_FAILURE)


@main.command()
@server_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plan(config_file: str | None, as_json: bool, **flags: Any) -> None:
    """Print how this machine and config would be sized, without starting anything."""
    from scholarsource.sizing import plan as make_plan

    sizing = make_plan(build_config(config_file, **flags))
    click.echo(json.dumps(sizing.as_dict(), indent=2) if as_json
               else f"{sizing.describe()}\n\n{sizing.advice()}")


@main.command("check-config")
@server_options
def check_config(config_file: str | None, **flags: Any) -> None:
    """Validate the configuration and print the values in effect, as JSON."""
    from scholarsource.sizing import plan as make_plan

    config = build_config(config_file, **flags)
    sizing = make_plan(config)
    # workers = 0 and slots = 0 mean "size automatically": show what that comes to, and why.
    values = {**config.as_dict(), "workers": sizing.workers, "slots": sizing.slots,
              "sizing": sizing.describe()}
    click.echo(json.dumps(values, indent=2))


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@server_options
def backup(file: str, force: bool, config_file: str | None, **flags: Any) -> None:
    """Copy the database to FILE, consistently, while the server runs.

    Only the database: the artifacts' files (artifacts_dir, DATA_DIR/artifacts by default)
    are not in FILE. Copy that directory beside it after the backup, e.g. `rsync -a
    DATA_DIR/artifacts/ DEST/artifacts/`: a file the copy holds and the backup does not
    know is swept at the next start, never served."""
    from scholarsource.backup import BackupError
    from scholarsource.backup import backup as take_backup
    from scholarsource.store.factory import where

    config = build_config(config_file, **flags)
    try:
        result = take_backup(config, Path(file), force=force)
    except BackupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    click.echo(f"backed up {where(config)} to {result.path} ({result.pages} pages, "
               f"{result.bytes / 1024**2:.1f} MiB)")


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter("must be more than zero")
    return seconds


@main.command()
@server_options
@click.option("--older-than", metavar="DURATION", callback=_duration,
              help="Prune finished jobs of every state older than this ('1d', '12h', "
                   "seconds) instead of the [retention] ages.")
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@click.option("--vacuum", is_flag=True,
              help="Then rewrite the file so that it gives space back from now on (holds "
                   "the write lock throughout: for a quiet time).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def prune(older_than: float | None, dry_run: bool, vacuum: bool, as_json: bool,
          config_file: str | None, **flags: Any) -> None:
    """Delete finished jobs past their retention now (safe while the server runs)."""
    from scholarsource.config import Retention
    from scholarsource.prune import PruneError
    from scholarsource.prune import prune as run_prune
    from scholarsource.store.factory import where

    config = build_config(config_file, **flags)
    retention = config.retention if older_than is None else Retention(
        older_than, older_than, older_than)
    try:
        result = run_prune(config, retention, dry_run=dry_run, vacuum=vacuum)
    except PruneError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), indent=2))
        return
    states = ", ".join(f"{state} {n}" for state, n in result.counts.items())
    verb = "would prune" if dry_run else "pruned"
    click.echo(f"{verb} {sum(result.counts.values())} job(s) ({states}) from {where(config)}")
    click.echo(f"file {result.bytes_before / 1024**2:.1f} MiB -> "
               f"{result.bytes_after / 1024**2:.1f} MiB, auto_vacuum {result.auto_vacuum}"
               + ("" if result.auto_vacuum == "incremental" or vacuum else
                  " (freed space is reused, not given back: run prune --vacuum once)"))


@main.command()
@server_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def doctor(config_file: str | None, as_json: bool, **flags: Any) -> None:
    """Check config, SQLite, data directory, database, disk and sizing (safe while serving)."""
    from scholarsource.doctor import Status, diagnose

    checks = diagnose(config_file, flags)
    failed = any(check.status is Status.FAIL for check in checks)
    if as_json:
        click.echo(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]},
                              indent=2))
    else:
        for check in checks:
            click.echo(f"{check.status.value:<5} {check.name:<9} {check.message}")
            if check.fix:
                click.echo(f"{'':<16}fix: {check.fix}")
    sys.exit(EXIT_UNHEALTHY if failed else EXIT_OK)


@main.command("migrate-to")
@click.argument("url")
@click.option("--all", "everything", is_flag=True,
              help="Copy finished jobs too, with their results and history.")
@server_options
def migrate_to(url: str, everything: bool, config_file: str | None, **flags: Any) -> None:
    """Copy the jobs of the (stopped) SQLite data directory that are still to run to the
    PostgreSQL database at URL. Safe to run again: nothing is copied twice."""
    from scholarsource.errors import DataDirInUse
    from scholarsource.store.transfer import migrate_to as run_migration
    from scholarsource.store.url import mask

    config = build_config(config_file, **flags)
    try:
        done = run_migration(config, url, everything=everything)
    except DataDirInUse as exc:
        click.echo(f"error: {exc}: stop it first", err=True)
        sys.exit(EXIT_DATA_DIR_IN_USE)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except ScholarSourceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    click.echo(f"copied {done.jobs} job(s) with {done.events} event(s), {done.queues} queue "
               f"pause(s), {done.schedules} schedule state(s) and {done.keys} API key(s) from "
               f"{config.db_path} to {mask(url)}; {done.skipped} job(s) were there already")


@main.command()
def version() -> None:
    """Print the version."""
    click.echo(__version__)


for command in client_commands:
    main.add_command(command)
main.add_command(bench)
main.add_command(tenants_group(server_options, build_config))
from scholarsource.keycommands import keys_group  # noqa: E402  (it reuses server_options)

main.add_command(keys_group)
