"""The bench's pure parts: percentiles, sweep parsing, ratios, tables, the SVG chart."""

from __future__ import annotations

from typing import Any

import pytest

from scholarsource.bench import compare, flowcontrol, html_report, sweep, table
from scholarsource.bench.context import Settings
from scholarsource.bench.runner import result_problems
from scholarsource.bench.scenarios import SCENARIOS
from scholarsource.bench.stats import timeline
from scholarsource.percentiles import percentile


def test_percentiles_are_nearest_rank_in_ms() -> None:
    values = [i / 1000 for i in range(1, 1001)]  # 1..1000 ms
    assert percentile(values) == {"p50": 500.0, "p90": 900.0, "p99": 990.0, "p99_9": 999.0,
                                  "max": 1000.0}
    assert percentile([]) == dict.fromkeys(("p50", "p90", "p99", "p99_9", "max"))


def test_timeline_buckets_by_second_of_start() -> None:
    rows = timeline([0.1, 0.5, 1.2], [0.001, 0.003, 0.002], 2.0)
    assert [(r["t"], r["requests"]) for r in rows] == [(0, 2), (1, 1)]
    assert rows[0]["p99_ms"] == 3.0


@pytest.mark.parametrize(("text", "parsed"), [
    ("workers=1,2,4", ("workers", [1.0, 2.0, 4.0])),
    ("rate=50.5,100", ("rate", [50.5, 100.0])),
])
def test_sweep_parse(text: str, parsed: tuple[str, list[float]]) -> None:
    assert sweep.parse(text) == parsed


@pytest.mark.parametrize("text", ["bogus", "cores=1,2", "workers=", "slots=0,1", "clients=1.5"])
def test_sweep_parse_rejects(text: str) -> None:
    with pytest.raises(sweep.SweepError):
        sweep.parse(text)


def _result(throughput: float, p99: float, efficiency: float | None = None) -> dict[str, Any]:
    return {"unit": "jobs/s", "throughput_per_s": throughput,
            "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": p99, "p99_9": p99, "max": p99},
            "errors": {}, "jobs": {"efficiency": efficiency}}


def test_scaling_speedup_and_efficiency() -> None:
    runs = [{"value": v, "scenarios": {"e2e-cpu": _result(t, 5.0, e)}}
            for v, t, e in ((1, 4.0, 0.95), (2, 7.0, 0.9))]
    rows = sweep.scaling({"key": "slots", "runs": runs})["e2e-cpu"]
    assert [r["speedup"] for r in rows] == [1.0, 1.75]
    assert [r["scaling_efficiency"] for r in rows] == [1.0, 0.875]
    assert rows[1]["efficiency"] == 0.9


def test_compare_divides_new_by_old() -> None:
    old = {"scenarios": {"submit": _result(1000.0, 20.0), "gone": _result(1.0, 1.0)}}
    new = {"scenarios": {"submit": _result(1500.0, 10.0), "added": _result(1.0, 1.0)}}
    rows = {r["figure"]: r for r in compare.ratios(new, old)}
    assert rows["throughput_per_s"]["ratio"] == 1.5
    assert rows["p99_ms"]["ratio"] == 0.5 and rows["p99_ms"]["lower_is_better"]
    assert not rows["throughput_per_s"]["lower_is_better"]
    assert {r["run"] for r in compare.ratios(new, old)} == {"submit"}


def test_compare_rejects_a_file_that_is_not_a_result(tmp_path: Any) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"a": 1}')
    with pytest.raises(compare.CompareError):
        compare.load(path)


def test_table_aligns_and_marks_missing_values() -> None:
    text = table.render(["a", "b"], [["x", 1234.5], ["longer", None]])
    lines = text.splitlines()
    assert lines[0] == "a           b"
    assert lines[2] == "x       1,234" and lines[3] == "longer      -"


def test_line_chart_is_plain_svg() -> None:
    svg = html_report.line_chart("t", [("a", [(0, 1.0), (1, 3.0)])], "x", "y")
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "<polyline" in svg
    assert html_report.line_chart("t", [], "x", "y") == ""


def test_scenario_headers_say_how_many_jobs_and_which_client() -> None:
    default = Settings()
    assert SCENARIOS["e2e-noop"].header(default) == (
        "2,000 no-op jobs, submit to all done: queue + dispatch overhead [raw client]")
    assert SCENARIOS["e2e-cpu"].header(Settings(jobs=8, client="httpx")).startswith(
        "8 CPU-bound jobs (250 ms each)")
    assert SCENARIOS["pickup"].header(default).endswith("100 jobs one at a time: "
                                                        "submit-to-start latency [httpx client]")
    assert SCENARIOS["sse"].header(default).endswith("/api/jobs/{id}/events [httpx client]")
    assert all("{jobs}" not in s.header(default) and "N " not in s.header(default)
               for s in SCENARIOS.values())


def test_report_says_what_each_figure_measures() -> None:
    result = {"throughput_per_s": 900.0, "unit": "jobs/s", "errors": {},
              "latency_ms": {"p50": 3.0, "p90": 4.0, "p99": 5.0, "p99_9": 6.0, "max": 7.0},
              "jobs": {"count": 8, "slots": 2, "wait_ms": {"p50": 431.0, "p99": 600.0},
                       "run_ms": {"p50": 1.0, "p99": 2.0}, "slot_usage": 0.5}}
    results = {"config": {"client": "raw", "clients": 32, "processes": 2},
               "scenarios": {"e2e-noop": result},
               "disk": {"fsyncs_per_s": 1234.0, "fsync_ms": 0.81, "filesystem": "ext4",
                        "directory": "/tmp/b"}}
    text = table.report(results)
    assert text.startswith("load: 32 clients over 2 generator process(es), raw client: a "
                           "minimal HTTP/1.1 client")
    assert "req p50 ms" in text and "job wait p50 ms" in text
    assert "req ms: how long each HTTP request took, sent to answered (for the job scenarios, " \
           "their submits)" in text
    assert "job wait: submitted to started" in text
    assert ("disk: the disk under /tmp/b (ext4) makes 1,234 flushes to storage (fsync) per "
            'second, 0.81 ms each. With durability = "full" every commit waits for one') in text


def _job(queue: str, started: float, finished: float, task: str = "sleep") -> dict[str, Any]:
    return {"queue": queue, "task": task, "started_at": started, "finished_at": finished}


def test_e2e_queues_finds_a_broken_cap_and_a_broken_rate_limit() -> None:
    capped, rate = flowcontrol.CAPPED, flowcontrol.RATE_TASK
    # One after the other, a finish and the next start at the same instant: the cap held.
    serial = [_job(capped, 0.0, 1.0), _job(capped, 1.0, 2.0), _job("other", 0.5, 1.5)]
    assert flowcontrol.most_running(serial[:2]) == 1
    assert flowcontrol.violations(serial) == []
    overlapping = [*serial, _job(capped, 1.5, 1.7)]
    assert flowcontrol.most_running(j for j in overlapping if j["queue"] == capped) == 2
    assert flowcontrol.violations(overlapping) == [
        f"2 jobs of queue {capped} ran at once (max_running = 1)"]
    limit = flowcontrol.RATE_LIMIT
    # `limit` starts in each second, the next second's first exactly one window later: held.
    held = [_job("q", i / limit + s, 9.0, rate) for s in (0.0, 1.0) for i in range(limit)]
    assert flowcontrol.most_starts([j["started_at"] for j in held], 1.0) == limit
    assert flowcontrol.violations(held) == []
    broken = [*held, _job("q", 0.999, 9.0, rate)]
    assert flowcontrol.violations(broken) == [
        f"{limit + 1} jobs of task {rate} started within 1 s (rate_limit = {limit}/s)"]


def test_a_broken_limit_or_a_lost_job_is_a_problem_of_the_run() -> None:
    jobs = [_job(flowcontrol.CAPPED, 0.0, 1.0), _job(flowcontrol.CAPPED, 0.5, 1.5)]
    result = {"lost": 2, "violations": flowcontrol.violations(jobs)}
    assert result_problems("e2e-queues", result) == [
        "e2e-queues: 2 accepted job(s) missing",
        f"e2e-queues: 2 jobs of queue {flowcontrol.CAPPED} ran at once (max_running = 1)"]
    assert result_problems("e2e-noop", {"lost": 0}) == []
