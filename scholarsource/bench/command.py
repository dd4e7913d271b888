"""`scholarsource bench`: parse the command line into a Plan, run it, print and write results."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import click

from scholarsource.bench import compare, html_report
from scholarsource.bench import sweep as sweeps
from scholarsource.bench.context import Settings
from scholarsource.bench.progress import Progress
from scholarsource.bench.runner import Plan, Runner
from scholarsource.bench.scenarios import SCENARIOS
from scholarsource.bench.servers import TargetError
from scholarsource.bench.table import report, runs
from scholarsource.exitcodes import EXIT_FAILURE

EXIT_INTERRUPTED = 130  # the shell's code for "ended by SIGINT"
_CLIENTS_PER_PROCESS = 16  # one generator process per this many clients, up to the cores


def _names(requested: tuple[str, ...], url: str | None) -> tuple[str, ...]:
    """The scenarios to run, in the standard order; `all` (or nothing) means every one
    (over --url, every one that needs no server configured its own way)."""
    unknown = [n for n in requested if n != "all" and n not in SCENARIOS]
    if unknown:
        raise click.UsageError(f"unknown scenario {unknown[0]!r}; choose from "
                               f"{', '.join(SCENARIOS)} or all")
    own = [n for n in requested if n in SCENARIOS and SCENARIOS[n].server_config]
    if url is not None and own:
        raise click.UsageError(f"{own[0]} configures queues of its own, so it runs on a "
                               "server the bench starts: it cannot be used with --url")
    if not requested or "all" in requested:
        return tuple(n for n, s in SCENARIOS.items() if url is None or not s.server_config)
    return tuple(dict.fromkeys(requested))


def _processes(clients: int, asked: int | None) -> int:
    if asked is not None:
        return asked
    return min(len(os.sched_getaffinity(0)), max(1, math.ceil(clients / _CLIENTS_PER_PROCESS)))


def _plan(names: tuple[str, ...], url: str | None, workers: int | None, slots: int | None,
          baseline: bool, sweep: str | None, settings: Settings) -> Plan:
    parsed = None
    if sweep is not None:
        try:
            key, values = sweeps.parse(sweep)
        except sweeps.SweepError as exc:
            raise click.UsageError(str(exc)) from None
        if url is not None and key in sweeps.SERVER_KEYS:
            raise click.UsageError(f"--sweep {key} starts a server per value: "
                                   "it cannot be used with --url")
        if baseline:
            raise click.UsageError("--baseline and --sweep cannot be used together")
        parsed = (key, tuple(values))
    if url is not None and (workers is not None or slots is not None):
        raise click.UsageError("--workers and --slots size a server the bench starts; "
                               "they cannot be used with --url")
    return Plan(_names(names, url), settings, url, workers or 0, slots or 0, baseline, parsed)


def _stop_on_term(signum: int, frame: FrameType | None) -> None:
    # TERM (a timeout, CI) unwinds like Ctrl-C, so every `finally` stops its server.
    raise KeyboardInterrupt


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    click.echo(f"wrote {path}", err=True)


@click.command("bench")
@click.argument("scenario", nargs=-1)
@click.option("--url", help="Load this running server instead of starting one.")
@click.option("--clients", type=click.IntRange(1), default=32, show_default=True,
              help="Concurrent clients (connections; users for frontend and sse).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True),
              help="Seconds per HTTP load (default 5).")
@click.option("--jobs", type=click.IntRange(1),
              help="Operations per HTTP load instead of a duration, and jobs per job "
                   "scenario (defaults: e2e-noop 2000, e2e-sleep 30, e2e-cpu 16, pickup 100, "
                   "e2e-queues 300, e2e-scheduled 300).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True),
              help="Open loop: start this many operations per second, latency from the "
                   "intended time. Without it: closed loop.")
@click.option("--workers", type=click.IntRange(0), help="API workers of the started server.")
@click.option("--slots", type=click.IntRange(0), help="Job slots of the started server.")
@click.option("--config", "config_path",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML config for the server the bench starts (its bind and data_dir are "
                   "replaced by the bench's own).")
@click.option("--scrape-metrics", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="GET /metrics this often during each scenario, as Prometheus would "
                   "(compare with a run without it: the cost of being monitored).")
@click.option("--streams", type=click.IntRange(0), default=0,
              help="sse: hold this many event streams open (one quiet job each) while a "
                   "submit load runs, and report the submit latency under them.")
@click.option("--processes", type=click.IntRange(1),
              help="Load generator processes (default: one per 16 clients, up to the cores).")
@click.option("--client", type=click.Choice(["raw", "httpx"]), default="raw",
              show_default=True, help="raw: a minimal HTTP/1.1 client that costs a few % of "
                                      "httpx's CPU, so the figures are the server's; httpx: "
                                      "what a Python client sees.")
@click.option("--baseline", is_flag=True,
              help="Run submit, submit-minimal and status against a minimal Starlette + "
                   "aiosqlite app too.")
@click.option("--sweep", metavar="KEY=V1,V2,...",
              help="Run once per value of workers, slots, clients or rate.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every result and the machine's facts here.")
@click.option("--compare", "compare_path", type=click.Path(dir_okay=False, path_type=Path),
              help="An earlier --json file: print each figure's ratio to it.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a self-contained HTML page with charts here.")
def bench(scenario: tuple[str, ...], url: str | None, clients: int, duration: float | None,
          jobs: int | None, rate: float | None, workers: int | None, slots: int | None,
          config_path: Path | None, scrape_metrics: float | None, streams: int,
          processes: int | None, client: str, baseline: bool,
          sweep: str | None,
          json_path: Path | None, compare_path: Path | None, report_path: Path | None) -> None:
    """Load a ScholarSource server and report what this machine can do.

    SCENARIO: submit, submit-minimal, batch, status, e2e-noop, e2e-sleep, e2e-cpu, pickup,
    e2e-queues, e2e-scheduled, e2e-fair, frontend, sse, or all (the default; over --url, all
    but e2e-queues and e2e-fair). Without --url a fresh `scholarsource serve` is started on a
    temporary data directory and stopped at the end, also on Ctrl-C; e2e-queues gets one of
    its own, configured with the queues it loads.
    """
    if duration is not None and jobs is not None:
        raise click.UsageError("--duration and --jobs are alternatives: give one")
    settings = Settings(clients=clients, duration=duration, jobs=jobs, rate=rate,
                        processes=_processes(clients, processes), client=client,
                        scrape_metrics=scrape_metrics, streams=streams)
    if url is not None and config_path is not None:
        raise click.UsageError("--config applies to a server the bench starts; it cannot be "
                               "used with --url")
    plan = dataclasses.replace(_plan(scenario, url, workers, slots, baseline, sweep, settings),
                               config=config_path)
    old = None
    if compare_path is not None:
        try:
            old = compare.load(compare_path)
        except compare.CompareError as exc:
            raise click.BadParameter(str(exc), param_hint="--compare") from None
    results = _run(plan)
    _output(results, old, compare_path, json_path, report_path)
    if any("failed" in r for _, r in runs(results)) or any(
            "failed" in r for r in (results.get("baseline") or {}).values()):
        sys.exit(EXIT_FAILURE)


def _run(plan: Plan) -> dict[str, Any]:
    previous = signal.signal(signal.SIGTERM, _stop_on_term)
    try:
        return Runner(plan, lambda line: click.echo(line, err=True), Progress()).run()
    except TargetError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    except KeyboardInterrupt:
        click.echo("interrupted: every server the bench started has been stopped", err=True)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _output(results: dict[str, Any], old: dict[str, Any] | None, compare_path: Path | None,
            json_path: Path | None, report_path: Path | None) -> None:
    click.echo(report(results))
    if results.get("sweep"):
        click.echo("\n" + sweeps.table(results["sweep"]))
    if old is not None and compare_path is not None:
        results["compare"] = {"file": str(compare_path), "ratios": compare.ratios(results, old)}
        click.echo("\n" + compare.table(results["compare"]["ratios"], compare_path))
    if json_path is not None:
        _write(json_path, json.dumps(results, indent=1, default=str) + "\n")
    if report_path is not None:
        _write(report_path, html_report.render(results))
