"""Tasks for bench/fanout.py (its server imports this module: SCHOLARSOURCE_TASK_MODULES)."""

from __future__ import annotations

from scholarsource import Context, task


@task("bench_fan_out")
def bench_fan_out(ctx: Context, n: int = 10_000) -> object:
    """Submit `n` no-op children and continue with bench_gather once they have ended."""
    ids = [ctx.submit("noop") for _ in range(n)]
    return ctx.continue_with("bench_gather", after=ids)


@task("bench_gather")
def bench_gather(ctx: Context) -> int:
    """How many results the continuation received."""
    return len(ctx.parent_results)
