"""`--report FILE.html`: one self-contained page (inline SVG, no script, no CDN) that opens
offline: the tables, latency and throughput over time per scenario, and the scaling curves
of a sweep."""

from __future__ import annotations

import html
import json
import math
from typing import Any

from scholarsource.bench import sweep as sweeps
from scholarsource.bench.table import report as text_report
from scholarsource.bench.table import runs

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf")
_W, _H, _PAD, _LEGEND = 760, 260, 48, 150  # _LEGEND: room on the right for names

Series = list[tuple[str, list[tuple[float, float]]]]


def _ticks(top: float) -> list[float]:
    """About five round steps from 0 to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 5
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= raw)
    return [i * step for i in range(int(math.ceil(top / step)) + 1)]


def _label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.2g}"


def line_chart(title: str, series: Series, x_label: str, y_label: str) -> str:
    """An SVG line chart with axes, ticks and a legend."""
    points = [p for _, pts in series for p in pts]
    if not points:
        return ""
    xs, ys = _ticks(max(x for x, _ in points)), _ticks(max(y for _, y in points))
    plot_w, plot_h = _W - _PAD - _LEGEND, _H - 2 * _PAD

    def sx(x: float) -> float:
        return _PAD + x / xs[-1] * plot_w

    def sy(y: float) -> float:
        return _H - _PAD - y / ys[-1] * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
           f'viewBox="0 0 {_W} {_H}" font-family="sans-serif" font-size="11">',
           f'<text x="{_W / 2}" y="16" text-anchor="middle" font-size="13">'
           f'{html.escape(title)}</text>']
    for y in ys:
        out.append(f'<line x1="{_PAD}" x2="{_PAD + plot_w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
                   f'stroke="#ddd"/><text x="{_PAD - 4}" y="{sy(y) + 4:.1f}" '
                   f'text-anchor="end">{_label(y)}</text>')
    for x in xs:
        out.append(f'<text x="{sx(x):.1f}" y="{_H - _PAD + 14}" text-anchor="middle">'
                   f'{_label(x)}</text>')
    out.append(f'<text x="{_PAD + plot_w / 2}" y="{_H - 8}" text-anchor="middle">'
               f'{html.escape(x_label)}</text>')
    out.append(f'<text transform="translate(12 {_H / 2}) rotate(-90)" text-anchor="middle">'
               f'{html.escape(y_label)}</text>')
    for i, (name, pts) in enumerate(series):
        color = _COLORS[i % len(_COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>'
                for x, y in pts]
        out.append(f'<text x="{_PAD + plot_w + 8}" y="{_PAD + 14 * i}" fill="{color}">'
                   f'{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _timeline_charts(results: dict[str, Any]) -> list[str]:
    charts, throughput = [], []
    for label, result in runs(results):
        rows = result.get("timeline") or []
        if len(rows) < 2:
            continue
        latency: Series = [(q, [(r["t"], r[f"{q}_ms"]) for r in rows if r[f"{q}_ms"] is not None])
                           for q in ("p50", "p99")]
        charts.append(line_chart(f"{label}: request latency over time", latency,
                                 "seconds into the run", "ms"))
        throughput.append((label, [(r["t"], float(r["requests"])) for r in rows]))
    if throughput:
        charts.insert(0, line_chart("requests begun per second", throughput,
                                    "seconds into the run", "requests/s"))
    return charts


def _scaling_charts(results: dict[str, Any]) -> list[str]:
    sweep = results.get("sweep")
    if not sweep:
        return []
    return [line_chart(f"scaling of {name}", [(name, [(r["value"], r["throughput_per_s"])
                                                      for r in rows])],
                       sweep["key"], rows[0]["unit"])
            for name, rows in sweep.get("scaling", {}).items()]


def render(results: dict[str, Any]) -> str:
    """The whole page."""
    machine = results.get("machine", {})
    facts = (f"{machine.get('date')} · {machine.get('usable_cores')} cores "
             f"({machine.get('cpu')}) · {machine.get('ram_bytes', 0) / 1024**3:.1f} GiB RAM · "
             f"Python {machine.get('python')} · SQLite {machine.get('sqlite')} · "
             f"commit {machine.get('git_commit')}")
    tables = text_report(results)
    if results.get("sweep"):
        tables += "\n\n" + sweeps.table(results["sweep"])
    charts = _scaling_charts(results) + _timeline_charts(results)
    config = json.dumps(results.get("config"), indent=1)
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>scholarsource bench</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}"
        "svg{margin:0.5em 1em 0.5em 0;border:1px solid #eee}</style></head><body>",
        "<h1>scholarsource bench</h1>", f"<p>{html.escape(facts)}</p>",
        f"<pre>{html.escape(tables)}</pre>", "<h2>Charts</h2>", *charts,
        "<h2>Settings</h2>", f"<pre>{html.escape(config)}</pre>", "</body></html>", ""])
