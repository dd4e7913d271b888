"""One bench run: start (or find) the server, run the scenarios, the baseline and the sweep,
and gather every result with the machine's facts. Every server it starts is stopped in a
`finally`, so an error or Ctrl-C never leaves one behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from scholarsource.bench import sweep as sweeps
from scholarsource.bench.context import Context, Settings
from scholarsource.bench.jobruns import wait_idle
from scholarsource.bench.machine import fsync_rate, machine
from scholarsource.bench.progress import Progress
from scholarsource.bench.scenarios import SCENARIOS
from scholarsource.bench.scraper import MetricsScraper
from scholarsource.bench.servers import Target, check_url, start_baseline, start_scholarsource
from scholarsource.bench.table import load_line

FORMAT = "scholarsource-bench/1"
_SETTLE = 60.0  # seconds an HTTP scenario waits for the queue to empty before it starts
_BOOT = 30.0  # seconds a started server gets to bring up every worker and slot


@dataclass(frozen=True)
class Plan:
    """What the command line asked for."""

    names: tuple[str, ...]
    settings: Settings
    url: str | None = None
    workers: int = 0  # 0: the server sizes itself
    slots: int = 0
    baseline: bool = False
    sweep: tuple[str, tuple[float, ...]] | None = None
    config: Path | None = None  # a TOML config for the servers the bench starts


Say = Callable[[str], None]


class Runner:
    """Runs a Plan; `say` prints a line of news, `progress` draws the bar."""

    def __init__(self, plan: Plan, say: Say, progress: Progress) -> None:
        self.plan, self.say, self.progress = plan, say, progress
        self.problems: list[str] = []

    def run(self) -> dict[str, Any]:
        """Everything measured, ready for --json."""
        plan = self.plan
        results: dict[str, Any] = {
            "format": FORMAT, "machine": machine(),
            "config": {"url": plan.url, "spawned": plan.url is None,
                       "config_file": None if plan.config is None else str(plan.config),
                       "workers": plan.workers,
                       "slots": plan.slots, "scenarios": list(plan.names),
                       "baseline": plan.baseline, **asdict(plan.settings),
                       "sweep": None if plan.sweep is None else
                       {"key": plan.sweep[0], "values": list(plan.sweep[1])}},
            "scenarios": {},
        }
        self.say(load_line(results["config"]))
        with tempfile.TemporaryDirectory(prefix="scholarsource-bench-") as tmp:
            workdir = Path(tmp)
            results["disk"] = fsync_rate(workdir)
            if plan.sweep is not None:
                results["sweep"] = self._sweep(workdir, *plan.sweep)
            else:
                results["scenarios"], results["server"] = self._on_server(
                    workdir, plan.settings, plan.workers, plan.slots)
                if plan.baseline:
                    self._baseline(workdir, results)
        results["problems"] = self.problems
        return results

    def _target(self, workdir: Path, workers: int, slots: int, name: str,
                config: Path | None = None) -> Target:
        if self.plan.url is not None:
            return check_url(self.plan.url)
        config = config or self.plan.config
        self.say(f"starting scholarsource serve --workers {workers} --slots {slots}"
                 f"{'' if config is None else f' --config {config}'} ...")
        target = start_scholarsource(workdir, workers=workers, slots=slots, name=name,
                                     config=config)
        try:
            self._wait_complete(target, workers or len(os.sched_getaffinity(0)))
        except BaseException:
            target.stop()
            raise
        return target

    def _wait_complete(self, target: Target, workers: int) -> None:
        """Ready means one API worker answers; wait until every worker (and slot) is up,
        so that the per-role figures count them all from the first scenario."""
        deadline = time.monotonic() + _BOOT
        while time.monotonic() < deadline:
            if _complete(target, workers):
                return
            time.sleep(0.1)
        self.problems.append(f"not every API worker and slot of {target.name} was up "
                             f"{_BOOT:.0f}s after start")

    def _on_server(self, workdir: Path, settings: Settings, workers: int, slots: int,
                   name: str = "scholarsource") -> tuple[dict[str, Any], dict[str, Any]]:
        """Every scenario of the plan against one server (started here unless --url), and
        each that configures its server on one of its own."""
        shared = tuple(n for n in self.plan.names if SCENARIOS[n].server_config is None)
        scenarios: dict[str, Any] = {}
        server: dict[str, Any] = {}
        if shared:
            target = self._target(workdir, workers, slots, name)
            try:
                server = _describe(target)
                scenarios = self._scenarios(target, settings, shared)
            finally:
                self._stopped(target)
        for own in (n for n in self.plan.names if n not in shared):
            config = self._config_with(workdir, SCENARIOS[own].server_config or "", own)
            target = self._target(workdir, workers, slots, f"{name}-{own}", config)
            try:
                described = _describe(target)
                server = server or described
                scenarios.update(self._scenarios(target, settings, (own,)))
                scenarios[own]["own_server"] = described
            finally:
                self._stopped(target)
        return {n: scenarios[n] for n in self.plan.names}, server

    def _config_with(self, workdir: Path, extra: str, name: str) -> Path:
        """--config (if any) with `extra` TOML tables after it, as a file in `workdir`."""
        base = "" if self.plan.config is None else self.plan.config.read_text()
        path = workdir / f"{name}.toml"
        path.write_text(f"{base}\n# added by the bench for {name}\n{extra}")
        return path

    def _scenarios(self, target: Target, settings: Settings,
                   names: tuple[str, ...]) -> dict[str, Any]:
        ctx = Context(target, settings, self.progress)
        out: dict[str, Any] = {}
        for name in names:
            scenario = SCENARIOS[name]
            where = f" ({target.name})" if target.baseline else ""
            self.say(f"{name}{where}: {scenario.header(settings)}")
            if not target.baseline:
                self._settle(target)
            scraper = None
            if settings.scrape_metrics and not target.baseline:
                scraper = MetricsScraper(target.url, settings.scrape_metrics)
            try:
                with scraper or contextlib.nullcontext():
                    result = scenario.run(ctx)
            except (RuntimeError, TimeoutError, OSError, ValueError, KeyError,
                    httpx.HTTPError) as exc:
                result = {"failed": f"{type(exc).__name__}: {exc}"}
                self.problems.append(f"{name}{where} failed: {result['failed']}")
            if scraper is not None:
                result["metrics_scraped"] = scraper.summary()
            out[name] = {"scenario": name, "summary": scenario.header(settings), **result}
            self.problems += result_problems(f"{name}{where}", out[name])
        return out

    def _settle(self, target: Target) -> None:
        """Let the last scenario's jobs drain, so that they do not load this one."""
        with httpx.Client(base_url=target.url, timeout=30) as client:
            try:
                wait_idle(client, _SETTLE)
            except TimeoutError:
                self.problems.append(f"jobs were still queued or running after {_SETTLE:.0f}s"
                                     " when a scenario started")

    def _stopped(self, target: Target) -> None:
        code = target.stop()
        if target.process is not None and code not in (0, None):
            self.problems.append(f"the {target.name} server exited with {code}")
        self.problems += [f"{target.name} log: {line}" for line in target.problems()[:20]]

    def _baseline(self, workdir: Path, results: dict[str, Any]) -> None:
        """The same loads against the minimal Starlette + aiosqlite app, and our ratios."""
        names = tuple(n for n in self.plan.names if SCENARIOS[n].baseline)
        if not names:
            self.say("baseline: none of these scenarios has a baseline (submit, submit-minimal "
                     "and status do)")
            return
        workers = results["server"].get("api_workers") or self.plan.workers or 1
        self.say(f"starting the baseline app with {workers} worker(s) ...")
        target = start_baseline(workdir, workers=workers)
        try:
            self._wait_complete(target, workers)
            results["baseline"] = self._scenarios(target, self.plan.settings, names)
        finally:
            self._stopped(target)
        results["vs_baseline"] = {
            name: ratio(results["scenarios"][name], base)
            for name, base in results["baseline"].items()
            if "failed" not in base and "failed" not in results["scenarios"][name]}

    def _sweep(self, workdir: Path, key: str, values: tuple[float, ...]) -> dict[str, Any]:
        runs = []
        for value in values:
            self.say(f"sweep {key}={value:g}")
            settings, workers, slots = self.plan.settings, self.plan.workers, self.plan.slots
            if key == "workers":
                workers = int(value)
            elif key == "slots":
                slots = int(value)
            else:
                settings = settings.with_value(key, value)
            scenarios, server = self._on_server(workdir, settings, workers, slots,
                                                name=f"scholarsource-{key}-{value:g}")
            runs.append({"value": value, "server": server, "scenarios": scenarios})
        sweep: dict[str, Any] = {"key": key, "values": list(values), "runs": runs}
        sweep["scaling"] = sweeps.scaling(sweep)
        return sweep


def result_problems(label: str, result: dict[str, Any]) -> list[str]:
    """What a scenario's result shows went wrong on the server: accepted jobs that went
    missing, and limits the jobs' own times show were broken."""
    lost = [f"{label}: {result['lost']} accepted job(s) missing"] if result.get("lost") else []
    return lost + [f"{label}: {v}" for v in result.get("violations", ())]


def ratio(ours: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Our throughput, p99 and CPU per operation over the baseline's: the whole server's
    (ours includes the pool running the submitted jobs) and the API workers' alone."""
    def div(a: Any, b: Any) -> float | None:
        return round(a / b, 3) if isinstance(a, int | float) and b else None

    def cpu(r: dict[str, Any], key: str) -> Any:
        return (r.get("server") or {}).get(key)

    return {"ours_per_s": ours["throughput_per_s"], "baseline_per_s": base["throughput_per_s"],
            "throughput": div(ours["throughput_per_s"], base["throughput_per_s"]),
            "p99": div(ours["latency_ms"]["p99"], base["latency_ms"]["p99"]),
            "server_cpu_per_op": div(cpu(ours, "cpu_us_per_operation"),
                                     cpu(base, "cpu_us_per_operation")),
            "api_cpu_per_op": div(cpu(ours, "api_cpu_us_per_operation"),
                                  cpu(base, "api_cpu_us_per_operation"))}


def _complete(target: Target, workers: int) -> bool:
    """Whether `workers` API workers (and, for ours, every slot) are running."""
    if target.baseline:
        roles, _ = target.roles()
        return roles is not None and len(roles["api"]) >= workers
    health: dict[str, Any] = target.health()
    processes, pool = health.get("processes") or {}, health.get("pool") or {}
    workers = health.get("workers") or workers  # what the server was sized to, if it says
    return (len(processes.get("api") or []) >= workers
            and len(processes.get("slots") or []) >= (pool.get("slots") or 0))


def _describe(target: Target) -> dict[str, Any]:
    """What the server says about itself: version, API workers, slots."""
    health: dict[str, Any] = target.health()
    processes = health.get("processes") or {}
    return {"url": target.url, "version": health.get("version"),
            "master_pid": processes.get("master"),
            "api_workers": len(processes.get("api") or []),
            "slots": (health.get("pool") or {}).get("slots")}
