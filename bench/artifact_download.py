"""Artifact downloads: MB/s through the API against reading the same file from disk.

Starts a real server (one API worker, one slot) whose task module is this file, runs one job
that writes a SIZE MiB artifact of random bytes, then, with the file in the page cache for
both:
- disk: reads the file in 1 MiB chunks (what the API worker's own reads cost at best);
- api: streams GET /api/jobs/{id}/artifacts/{name} through httpx, discarding the bytes;
- api-range: the same for a Range of the middle half.
Each is the median of ROUNDS runs. Also reports the API worker's CPU seconds per GB sent
and its RSS before and after (flat: the file is streamed, never held).

    python bench/artifact_download.py [--mib 200] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from scholarsource import Context, task
from scholarsource.launcher import free_port, launch, serve_argv

MiB = 1024**2


@task("bench_artifact")
def bench_artifact(ctx: Context, mib: int) -> None:
    """Write `mib` MiB of random bytes as the artifact "blob.bin"."""
    with open(ctx.artifact("blob.bin"), "wb") as fh:
        for _ in range(int(mib)):
            fh.write(os.urandom(MiB))


def _proc(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and RSS bytes of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return (int(fields[11]) + int(fields[12])) / ticks, rss


def _disk(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while fh.read(MiB):
            pass
    return time.perf_counter() - start


def _download(client: httpx.Client, url: str, headers: dict[str, str]) -> tuple[float, int]:
    start, got = time.perf_counter(), 0
    with client.stream("GET", url, headers=headers) as answer:
        answer.raise_for_status()
        for chunk in answer.iter_raw(MiB):
            got += len(chunk)
    return time.perf_counter() - start, got


def run(mib: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLARSOURCE_")}
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent),
                                             env.get("PYTHONPATH", "")])
        env["SCHOLARSOURCE_TASK_MODULES"] = Path(__file__).stem
        server = launch(serve_argv(port, work / "data", workers=1, slots=1),
                        url=f"http://127.0.0.1:{port}", log_path=work / "server.log", env=env)
        try:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                job = client.post("/api/jobs", json={"task": "bench_artifact",
                                                     "params": {"mib": mib}}).json()
                while not (job := client.get(f"/api/jobs/{job['id']}").json())["final"]:
                    time.sleep(0.1)
                [artifact] = job["artifacts"]
                path = work / "data" / "artifacts" / job["id"] / "1" / "blob.bin"
                [api_pid] = client.get("/api/health").json()["processes"]["api"]
                _disk(path)  # into the page cache, for both
                disk = statistics.median(_disk(path) for _ in range(rounds))
                cpu0, rss0 = _proc(api_pid)
                timed = [_download(client, artifact["url"], {}) for _ in range(rounds)]
                cpu1, rss1 = _proc(api_pid)
                assert all(got == mib * MiB for _, got in timed)
                quarter = mib * MiB // 4
                ranged = [_download(client, artifact["url"],
                                    {"Range": f"bytes={quarter}-{3 * quarter - 1}"})
                          for _ in range(rounds)]
        finally:
            server.stop()
    api = statistics.median(t for t, _ in timed)
    return {"mib": mib, "rounds": rounds,
            "disk_mb_s": round(mib * MiB / disk / 1e6),
            "api_mb_s": round(mib * MiB / api / 1e6),
            "api_range_mb_s": round(mib * MiB / 2 / statistics.median(t for t, _ in ranged)
                                    / 1e6),
            "api_cpu_s_per_gb": round((cpu1 - cpu0) / (rounds * mib * MiB / 1e9), 2),
            "api_rss_mb": [round(rss0 / 1e6), round(rss1 / 1e6)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.mib, args.rounds)
    json.dump(result, sys.stdout, indent=2)
    print()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
