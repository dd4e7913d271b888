"""`--compare old.json`: each headline figure of this run over the same figure of an earlier one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scholarsource.bench.table import LOWER_IS_BETTER, headline, render, runs


class CompareError(Exception):
    """Raised when the earlier results cannot be read."""


def load(path: Path) -> dict[str, Any]:
    """An earlier `--json` file; CompareError if it is missing or not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CompareError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or "scenarios" not in data:
        raise CompareError(f"{path} is not a `scholarsource bench --json` file")
    return data


def ratios(new: dict[str, Any], old: dict[str, Any]) -> list[dict[str, Any]]:
    """new / old for every headline figure both runs have (None where old is 0)."""
    before = {label: headline(result) for label, result in runs(old)}
    rows = []
    for label, result in runs(new):
        if label not in before:
            continue
        for figure, value in headline(result).items():
            if figure not in before[label]:
                continue
            was = before[label][figure]
            rows.append({"run": label, "figure": figure, "old": was, "new": value,
                         "ratio": round(value / was, 3) if was else None,
                         "lower_is_better": any(m in figure for m in LOWER_IS_BETTER)})
    return rows


def table(rows: list[dict[str, Any]], old_path: Path) -> str:
    """The ratios as a table, saying which direction is better."""
    if not rows:
        return f"compare: no scenario in common with {old_path}"
    lines = [[r["run"], r["figure"], r["old"], r["new"],
              "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
              "lower is better" if r["lower_is_better"] else ""] for r in rows]
    return f"compared with {old_path}:\n" + render(
        ["run", "figure", "old", "new", "new/old", ""], lines)
