"""The analysis service's work, simulated: validate a trial's dataset, extract three tables
from it, analyse them together, and write the report as a file.

Each step reads what the steps before it returned (`ctx.parent_results`): the workflow
passes the data along, not the tasks. The extracts read a warehouse that times out now and
then; `outcomes` does so on its first attempt every time here, so that the retry and its
backoff show. `reindex` is the nightly batch work the analyses must not wait behind.
"""

from __future__ import annotations

import hashlib
import html
import json
import time
from typing import Any

from scholarsource import Context, task

# Seconds between retries of an extract: 1 s after the first failure (jittered down to half
# at most), doubling after each one. A warehouse that timed out needs a moment.
BACKOFF = 1.0


@task("validate", queue="analysis", timeout=120, max_attempts=1)
def validate(ctx: Context, dataset: str, rows: int) -> dict[str, Any]:
    """Check the dataset before anything is extracted; a bad one fails for good (one
    attempt: it would be as bad the second time)."""
    time.sleep(0.1)  # reading the header and the checksums
    if rows <= 0:
        raise ValueError(f"dataset {dataset!r} has no rows to analyse")
    return {"dataset": dataset, "rows": rows}


def _extract(ctx: Context, table: str, seconds: float) -> dict[str, Any]:
    (checked,) = ctx.parent_results.values()  # validate's result
    steps = max(1, round(seconds / 0.05))
    for i in range(steps):
        if ctx.cancel_requested:  # the analysis was cancelled: stop, keep nothing
            raise RuntimeError(f"{table}: cancelled")
        time.sleep(seconds / steps)  # reading the warehouse
        ctx.progress((i + 1) / steps, f"{table}: {i + 1} of {steps} chunks")
    seed = hashlib.sha256(f"{checked['dataset']}/{table}".encode()).digest()
    return {"table": table, "rows": checked["rows"], "mean": round(seed[0] / 2.55, 2)}


@task("demographics", queue="extract", timeout=600, max_attempts=3, backoff_base=BACKOFF)
def demographics(ctx: Context, seconds: float = 0.5) -> dict[str, Any]:
    """Who was in the trial."""
    return _extract(ctx, "demographics", seconds)


@task("outcomes", queue="extract", timeout=600, max_attempts=3, backoff_base=BACKOFF)
def outcomes(ctx: Context, seconds: float = 0.5) -> dict[str, Any]:
    """What happened to them; the warehouse times out on the first attempt (on purpose)."""
    if ctx.attempt == 1:
        raise TimeoutError("the outcomes warehouse timed out (on purpose: watch the retry)")
    return _extract(ctx, "outcomes", seconds)


@task("costs", queue="extract", timeout=600, max_attempts=3, backoff_base=BACKOFF)
def costs(ctx: Context, seconds: float = 0.5) -> dict[str, Any]:
    """What it cost."""
    return _extract(ctx, "costs", seconds)


@task("analyse", queue="analysis", timeout=1800, max_attempts=2)
def analyse(ctx: Context) -> dict[str, Any]:
    """The analysis over all three tables at once."""
    tables = {result["table"]: result for result in ctx.parent_results.values()}
    digest = json.dumps(tables, sort_keys=True).encode()
    for _ in range(20000):  # the model fit: a small CPU burst
        digest = hashlib.sha256(digest).digest()
    return {"tables": sorted(tables), "rows": tables["outcomes"]["rows"],
            "effect": round(tables["outcomes"]["mean"] - tables["costs"]["mean"] / 10, 2),
            "fit": digest.hex()[:16]}


@task("report", queue="analysis", timeout=600, max_attempts=2)
def report(ctx: Context, title: str) -> dict[str, Any]:
    """Write the report the analysts download: one HTML file, an artifact of this job."""
    (analysis,) = ctx.parent_results.values()
    rows = "".join(f"<tr><th>{html.escape(key)}</th><td>{html.escape(str(value))}</td></tr>"
                   for key, value in sorted(analysis.items()))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title></head><body><h1>{html.escape(title)}</h1><table>{rows}</table>"
            f"</body></html>\n").encode()
    ctx.artifact("report.html").write_bytes(page)
    return {"title": title, "bytes": len(page)}


@task("reindex", queue="batch", timeout=600)
def reindex(ctx: Context, shard: int, seconds: float = 0.4) -> dict[str, Any]:
    """Nightly batch work: rebuild one shard of the search index."""
    time.sleep(seconds)
    return {"shard": shard}
