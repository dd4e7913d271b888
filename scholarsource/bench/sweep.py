"""`--sweep KEY=V1,V2,...`: the same scenarios once per value, and how throughput scales.

`workers` and `slots` start a fresh server per value (so they need no `--url`); `clients`
and `rate` change the load on one server. Speedup is throughput over the first value's;
scaling efficiency is speedup over the growth of the value (1.0: perfectly linear).
"""

from __future__ import annotations

from typing import Any

from scholarsource.bench.table import render

SERVER_KEYS = ("workers", "slots")
LOAD_KEYS = ("clients", "rate")


class SweepError(ValueError):
    """Raised when a --sweep value cannot be read."""


def parse(text: str) -> tuple[str, list[float]]:
    """"workers=1,2,4" -> ("workers", [1, 2, 4]); SweepError on anything else."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or key not in SERVER_KEYS + LOAD_KEYS:
        raise SweepError(f"--sweep takes KEY=V1,V2,... with KEY one of "
                         f"{', '.join(SERVER_KEYS + LOAD_KEYS)}; got {text!r}")
    try:
        numbers = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise SweepError(f"--sweep {key}: values must be numbers; got {values!r}") from None
    if not numbers or any(n <= 0 for n in numbers):
        raise SweepError(f"--sweep {key}: give one or more values above 0")
    if key != "rate" and any(n != int(n) for n in numbers):
        raise SweepError(f"--sweep {key}: values must be whole numbers")
    return key, numbers


def scaling(sweep: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per scenario, one row per value: throughput, speedup, scaling efficiency."""
    out: dict[str, list[dict[str, Any]]] = {}
    first_value: dict[str, tuple[float, float]] = {}
    for run in sweep["runs"]:
        for name, result in run["scenarios"].items():
            throughput = result.get("throughput_per_s")
            if not throughput:
                continue
            base_value, base = first_value.setdefault(name, (run["value"], throughput))
            speedup = throughput / base
            out.setdefault(name, []).append({
                "value": run["value"], "throughput_per_s": throughput, "unit": result["unit"],
                "speedup": round(speedup, 3),
                "scaling_efficiency": round(speedup / (run["value"] / base_value), 3),
                "efficiency": (result.get("jobs") or {}).get("efficiency"),
                "p99_ms": (result.get("latency_ms") or {}).get("p99"),
                "server_cpu_cores": (result.get("server") or {}).get("cpu_cores"),
            })
    return out


def table(sweep: dict[str, Any]) -> str:
    """The scaling table of every scenario in the sweep."""
    parts = []
    for name, rows in sweep.get("scaling", {}).items():
        lines = [[f"{sweep['key']}={r['value']:g}", f"{r['throughput_per_s']:,.1f} {r['unit']}",
                  r["speedup"], r["scaling_efficiency"], r["efficiency"], r["p99_ms"],
                  r["server_cpu_cores"]] for r in rows]
        parts.append(f"scaling of {name}:\n" + render(
            [sweep["key"], "throughput", "speedup", "scaling eff.", "job efficiency",
             "p99 ms", "server cores"], lines))
    return "\n\n".join(parts)
