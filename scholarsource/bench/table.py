"""The readable tables printed at the end of a run, and the headline figures they show.

`headline()` picks the figures a reader compares between runs (the same ones `--compare`
divides and the HTML report plots), so the three never disagree on what matters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

# Figures where a smaller number is the better one (the compare table says so).
LOWER_IS_BETTER = ("_ms", "errors", "cpu_cores", "cpu_us")
_MIB = 1024**2


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def headline(result: dict[str, Any]) -> dict[str, float]:
    """The numeric headline figures of one scenario's result (absent ones left out)."""
    figures = {
        "throughput_per_s": result.get("throughput_per_s"),
        **{f"{q}_ms": _get(result, "latency_ms", q) for q in ("p50", "p90", "p99", "p99_9",
                                                               "max")},
        "errors": sum((result.get("errors") or {}).values()),
        "generator_cpu_cores": _get(result, "generator", "cpu_cores"),
        "server_cpu_cores": _get(result, "server", "cpu_cores"),
        "server_cpu_us_per_op": _get(result, "server", "cpu_us_per_operation"),
        "job_wait_p50_ms": _get(result, "jobs", "wait_ms", "p50"),
        "job_wait_p99_ms": _get(result, "jobs", "wait_ms", "p99"),
        "job_run_p50_ms": _get(result, "jobs", "run_ms", "p50"),
        "slot_usage": _get(result, "jobs", "slot_usage"),
        "efficiency": _get(result, "jobs", "efficiency"),
        "pickup_p50_ms": _get(result, "pickup_ms", "p50"),
        "pickup_p99_ms": _get(result, "pickup_ms", "p99"),
        "lateness_p50_ms": _get(result, "lateness_ms", "p50"),
        "lateness_p99_ms": _get(result, "lateness_ms", "p99"),
        "event_lag_p50_ms": _get(result, "event_lag_ms", "p50"),
        "event_lag_p99_ms": _get(result, "event_lag_ms", "p99"),
        "user_flow_p50_ms": _get(result, "user_flow_ms", "p50"),
    }
    return {k: float(v) for k, v in figures.items() if isinstance(v, int | float)}


def runs(results: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, result) of every scenario run: the plain ones, then each sweep value's."""
    for name, result in results.get("scenarios", {}).items():
        yield name, result
    sweep = results.get("sweep")
    if sweep:
        for run in sweep["runs"]:
            for name, result in run["scenarios"].items():
                yield f"{name} {sweep['key']}={run['value']:g}", result


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: thousands separated, a few significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def render(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned: the first to the left, the others to the right."""
    cells = [[str(h) for h in headers], *[[c if isinstance(c, str) else fmt(c) for c in row]
                                          for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                         strict=True)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


_CLIENTS = {
    "raw": "a minimal HTTP/1.1 client that costs a few % of httpx's CPU, so the figures are "
           "the server's (--client httpx shows what a Python client sees)",
    "httpx": "what a Python client sees; its own CPU may be the limit (--client raw measures "
             "the server)",
}


def load_line(config: dict[str, Any]) -> str:
    """Who sends the load, and what that means for the figures: the report's first line."""
    client = config.get("client", "raw")
    return (f"load: {config.get('clients')} clients over {config.get('processes')} generator "
            f"process(es), {client} client: {_CLIENTS.get(client, client)}; pickup and sse "
            "always use httpx")


def _failed(result: dict[str, Any]) -> bool:
    return "failed" in result


def main_table(results: dict[str, Any]) -> str:
    """Throughput, latency, errors and CPU per scenario run."""
    rows: list[list[Any]] = []
    for label, r in runs(results):
        if _failed(r):
            rows.append([label, "failed", "", "", "", "", "", "", "", ""])
            continue
        lat = r.get("latency_ms") or {}
        rows.append([label, f"{fmt(r['throughput_per_s'])} {r['unit']}",
                     *[lat.get(q) for q in ("p50", "p90", "p99", "p99_9", "max")],
                     sum((r.get("errors") or {}).values()),
                     _get(r, "generator", "cpu_cores"), _get(r, "server", "cpu_cores")])
    return render(["scenario", "throughput", "req p50 ms", "req p90 ms", "req p99 ms",
                   "req p99.9 ms", "req max ms", "errors", "gen cores", "server cores"], rows) \
        + ("\nreq ms: how long each HTTP request took, sent to answered (for the job "
           "scenarios, their submits); how long jobs waited and ran is in the table below.")


def jobs_table(results: dict[str, Any]) -> str:
    """Wait and run times of the job scenarios."""
    rows = []
    for label, r in runs(results):
        jobs = r.get("jobs")
        if not jobs or _failed(r):
            continue
        rows.append([label, jobs["count"], jobs.get("slots"), _get(jobs, "wait_ms", "p50"),
                     _get(jobs, "wait_ms", "p99"), _get(jobs, "run_ms", "p50"),
                     _get(jobs, "run_ms", "p99"), jobs.get("slot_usage"),
                     jobs.get("efficiency")])
    if not rows:
        return ""
    return render(["jobs", "count", "slots", "job wait p50 ms", "job wait p99 ms",
                   "job run p50 ms", "job run p99 ms", "slot usage", "efficiency"], rows) \
        + ("\njob wait: submitted to started, job run: started to finished, both from the "
           "server's timestamps; slot usage: time in jobs / (slots x elapsed).")


def roles_table(results: dict[str, Any]) -> str:
    """Server CPU (cores) and peak RSS (MiB) per process role."""
    rows, note = [], ""
    for label, r in runs(results):
        server = r.get("server") or {}
        if "unavailable" in server:
            note = f"server CPU and memory unavailable: {server['unavailable']}"
            continue
        roles = server.get("roles")
        if not roles:
            continue
        cells = []
        for role in ("master", "api", "pool", "slots"):
            info = roles.get(role)
            cells.append("-" if info is None else
                         f"{info['cpu_cores']:.2f} / {info['rss_peak_bytes'] / _MIB:.0f}")
        rows.append([label, *cells, server.get("cpu_us_per_operation")])
    text = render(["cores / peak MiB", "master", "api workers", "pool", "slots",
                   "server CPU us/op"], rows) if rows else ""
    return "\n".join(filter(None, [text, note]))


def extras(results: dict[str, Any]) -> list[str]:
    """One line each for what only one scenario measures."""
    lines = []
    for label, r in runs(results):
        if _failed(r):
            lines.append(f"{label}: FAILED: {r['failed']}")
        if "user_flow_ms" in r:
            flow = r["user_flow_ms"]
            lines.append(f"{label}: {fmt(r['users_done_per_s'])} users' jobs done/s; "
                         f"submit to seen done p50 {fmt(flow['p50'])} ms, "
                         f"p99 {fmt(flow['p99'])} ms")
        if "event_lag_ms" in r:
            lag = r["event_lag_ms"]
            lines.append(f"{label}: {r['events']:,} events, {fmt(r['streams_done_per_s'])} "
                         f"streams done/s; event delay p50 {fmt(lag['p50'])} ms, "
                         f"p99 {fmt(lag['p99'])} ms")
        if "held" in r:
            held = r["held"]
            delay = held.get("final_event_delay_ms") or {}
            lines.append(f"{label}: {held['streams']:,} streams held open (opened in "
                         f"{fmt(held['opened_s'])} s) during the submits; "
                         + (f"FAILED: {held['failed']}" if "failed" in held else
                            f"{held['ended_on_final_event']:,} ended on their final event, "
                            f"delay p50 {fmt(delay.get('p50'))} ms, p99 {fmt(delay.get('p99'))} "
                            f"ms; event reads {fmt(held.get('event_reads_per_s'))}/s; with "
                            f"only the streams open the server used "
                            f"{fmt(held.get('idle_server_cores'))} cores"))
        if "queues" in r:
            lines.append(f"{label}: job wait p50 / p99 ms by queue: " + ", ".join(
                f"{q} {fmt(_get(v, 'wait_ms', 'p50'))} / {fmt(_get(v, 'wait_ms', 'p99'))}"
                for q, v in r["queues"].items()))
            lim = r["limits"]
            lines.append(f"{label}: at most {lim['capped_most_running']} capped job(s) ran "
                         f"at once (max_running {lim['capped_max_running']}); at most "
                         f"{lim['rate_most_starts_per_window']} rate-limited starts in a "
                         f"window ({lim['rate_limit']})")
        if r.get("lateness_ms"):
            late = r["lateness_ms"]
            lines.append(f"{label}: start lateness (started - run_at) p50 {fmt(late['p50'])} "
                         f"ms, p99 {fmt(late['p99'])} ms, max {fmt(late['max'])} ms")
        if "fair" in r:
            fair, wait = r["fair"], r["fair"]["small_wait_ms"]
            lines.append(f"{label}: the small tenant's jobs waited p50 {fmt(wait['p50'])} ms, "
                         f"p99 {fmt(wait['p99'])} ms, max {fmt(wait['max'])} ms (one job runs "
                         f"{fmt(fair['job_run_ms'])} ms; the big tenant's backlog of "
                         f"{fair['backlog']:,} is {fmt(fair['fifo_wait_ms'])} ms of work, "
                         f"{fair['backlog_queued_when_small_done']:,} still queued then)")
        if r.get("pickup_ms"):
            pick = r["pickup_ms"]
            lines.append(f"{label}: pickup (submit to start) p50 {fmt(pick['p50'])} ms, "
                         f"p99 {fmt(pick['p99'])} ms, max {fmt(pick['max'])} ms")
        if r.get("lost"):
            lines.append(f"{label}: {r['lost']} accepted job(s) not found on the server")
        if "metrics_scraped" in r:
            scraped = r["metrics_scraped"]
            lines.append(f"{label}: /metrics scraped {scraped['scrapes']} time(s), every "
                         f"{fmt(scraped['every_s'])} s, p50 {fmt(scraped['latency_ms']['p50'])} "
                         f"ms, {scraped['failures']} failed")
        busiest = _get(r, "generator", "busiest_process_cores")
        if busiest is not None and busiest >= 0.9:
            remedy = "--processes" if _get(r, "generator", "client") == "raw" else \
                "--processes or --client raw"
            lines.append(f"{label}: a generator process used {busiest:.2f} of a core: the "
                         f"generator may be the limit (try {remedy})")
    return lines


def baseline_table(results: dict[str, Any]) -> str:
    """Our figures over the baseline app's, for the loads both can serve."""
    ratios = results.get("vs_baseline") or {}
    rows = [[name, r["ours_per_s"], r["baseline_per_s"], r["throughput"], r["p99"],
             r.get("api_cpu_per_op"), r.get("server_cpu_per_op")] for name, r in ratios.items()]
    return render(["vs baseline", "ours /s", "baseline /s", "throughput x", "p99 x",
                   "API CPU/op x", "server CPU/op x"], rows) if rows else ""


def report(results: dict[str, Any]) -> str:
    """Every table and line, as printed at the end of a run."""
    disk = results.get("disk") or {}
    parts = [load_line(results.get("config") or {}), main_table(results), jobs_table(results),
             roles_table(results), baseline_table(results), "\n".join(extras(results))]
    if disk:
        parts.append(f"disk: the disk under {disk['directory']} ({disk['filesystem']}) makes "
                     f"{disk['fsyncs_per_s']:,.0f} flushes to storage (fsync) per second, "
                     f"{disk['fsync_ms']} ms each. With durability = \"full\" every commit "
                     "waits for one, so that is the most commits per second it allows; with "
                     "\"normal\" (the default) commits do not wait for it.")
    parts += [f"problem: {p}" for p in results.get("problems", [])]
    return "\n\n".join(p for p in parts if p)
