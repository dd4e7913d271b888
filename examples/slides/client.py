"""Drive the slide service as its web app does: for each uploaded video, submit extraction,
then analysis, then generation, each once the step before it has succeeded.

    python client.py --videos 4 [--url http://127.0.0.1:8000]

Prints one line per step and ends with a JSON summary; exits 1 if any step failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

STEPS = ("extract_frames", "analyze_frames", "generate_slides")


def run_step(client: httpx.Client, task: str, video_id: str) -> dict[str, Any]:
    """Submit one step and poll its status until it has ended."""
    response = client.post("/api/jobs", json={"task": task, "params": {"video_id": video_id}})
    response.raise_for_status()
    job_id = response.json()["id"]
    while True:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        if job["final"]:
            print(f"{video_id}: {task} {job['status']} after {job['run_time']:.2f}s "
                  f"(waited {job['wait_time']:.2f}s)", flush=True)
            return job
        time.sleep(0.1)


def process_video(url: str, video_id: str) -> dict[str, Any]:
    """One video's pipeline; stops at the first step that did not succeed."""
    jobs = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for task in STEPS:
            job = run_step(client, task, video_id)
            jobs[task] = job["id"]
            if job["status"] != "succeeded":
                return {"video_id": video_id, "ok": False, "jobs": jobs}
    return {"video_id": video_id, "ok": True, "jobs": jobs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("SCHOLARSOURCE_URL",
                                                        "http://127.0.0.1:8000"))
    parser.add_argument("--videos", type=int, default=4)
    args = parser.parse_args()
    videos = [f"lecture-{i + 1}" for i in range(args.videos)]
    # Uploads arrive together: each video's pipeline runs in its own thread.
    with ThreadPoolExecutor(len(videos)) as pool:
        results = list(pool.map(lambda v: process_video(args.url, v), videos))
    print(json.dumps({"videos": results}))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
