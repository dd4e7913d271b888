"""Drive the course-analysis service as its frontend does: post to /api/submit, poll
/api/status/{job_id} until the analysis has ended.

    python client.py [--url http://127.0.0.1:8000]

1. Two users ask for courses at once: alice for two, bob for one. Each user's analyses run
   one at a time (the concurrency key is the user), beside the other user's.
2. alice opens her first course again: the frontend's form gets the cached analysis back
   (200, Cache-Hit: true), and nothing runs.
3. alice asks for a fresh analysis (the form's bypass_cache): it runs again.

Prints one line per answer and ends with a JSON summary; exits 1 if an analysis failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import httpx

REQUESTS = (("alice", "CS101"), ("alice", "MATH201"), ("bob", "BIO110"))


def submit(client: httpx.Client, body: dict[str, Any]) -> tuple[str, bool]:
    """POST /api/submit; the job's id and whether it was a cached answer."""
    response = client.post("/api/submit", json=body)
    response.raise_for_status()
    cached = response.headers.get("Cache-Hit") == "true"
    print(f"submitted {body}: {response.status_code}{' (cached)' if cached else ''}",
          flush=True)
    return response.json()["job_id"], cached


def wait(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """Poll /api/status/{job_id} as the frontend does, until the job has ended."""
    while True:
        job: dict[str, Any] = client.get(f"/api/status/{job_id}").json()
        if job["final"]:
            print(f"{job['params']['course_id']}: {job['status']} after "
                  f"{job['run_time'] or 0:.2f}s", flush=True)
            return job
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("SCHOLARSOURCE_URL",
                                                        "http://127.0.0.1:8000"))
    args = parser.parse_args()
    with httpx.Client(base_url=args.url, timeout=30) as client:
        # The frontend's own form: compat_task makes it an analyze_course job, and
        # compat_concurrency_key makes its user_id the job's concurrency key.
        ids = [submit(client, {"course_id": course, "user_id": user})[0]
               for user, course in REQUESTS]
        jobs = [wait(client, job_id) for job_id in ids]
        reopened, cache_hit = submit(client, {"course_id": "CS101", "user_id": "alice"})
        rerun_id, _ = submit(client, {"course_id": "CS101", "user_id": "alice",
                                      "bypass_cache": True})
        rerun = wait(client, rerun_id)
    ok = all(job["status"] == "succeeded" for job in [*jobs, rerun])
    print(json.dumps({"courses": dict(zip((f"{u}/{c}" for u, c in REQUESTS), ids, strict=True)),
                      "reopened": reopened, "cache_hit": cache_hit, "rerun": rerun_id}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
