"""The course-analysis service's work, simulated: one long job per course, whose
questions to the LLM are jobs of their own so that one rate limit holds across all courses.

A course job submits its LLM calls to the server it runs in (SCHOLARSOURCE_URL, else
http://127.0.0.1:8000, as for the CLI) and waits for them; the pool starts no more of them
than `[tasks.ask_llm] rate_limit` allows, whichever course they come from. Files go under
the server's data directory (SCHOLARSOURCE_DATA_DIR, else ./scholarsource-data).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

from scholarsource import Context, task

SECTIONS = ("syllabus", "readings", "assessments", "workload")


def _data_dir() -> Path:
    return Path(os.environ.get("SCHOLARSOURCE_DATA_DIR", "scholarsource-data"))


@task("ask_llm", queue="llm", timeout=120, max_attempts=3)
def ask_llm(ctx: Context, course_id: str, section: str) -> dict[str, Any]:
    """One (simulated) LLM call: a short wait for the answer, its call time recorded."""
    with open(_data_dir() / "llm_calls.log", "a") as log:
        log.write(f"{time.time():.6f} {course_id} {section}\n")
    time.sleep(0.2)
    return {"section": section, "summary": f"{section} of {course_id}: looks fine"}


@task("analyze_course", queue="courses", timeout=900, cache_ttl=3600)
def analyze_course(ctx: Context, course_id: str) -> dict[str, Any]:
    """Analyse one course: read it, ask the LLM about each section, write the report.
    Minutes in the real service, a few seconds here; the result is cached for an hour."""
    time.sleep(0.3)  # downloading the course material
    ctx.progress(0.1, "course material read")
    url = os.environ.get("SCHOLARSOURCE_URL", "http://127.0.0.1:8000")
    answers = []
    with httpx.Client(base_url=url, timeout=30) as client:
        calls = [client.post("/api/jobs", json={
            "task": "ask_llm", "params": {"course_id": course_id, "section": section}})
            for section in SECTIONS]
        for i, call in enumerate(calls):
            call.raise_for_status()
            answers.append(_wait(ctx, client, call.json()["id"]))
            ctx.progress(0.1 + 0.8 * (i + 1) / len(calls), f"{i + 1} of {len(calls)} answers")
    digest = json.dumps(answers).encode()
    for _ in range(20000):  # scoring the answers: a small CPU burst
        digest = hashlib.sha256(digest).digest()
    report = _data_dir() / "courses" / f"{course_id}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"course_id": course_id, "answers": answers}))
    return {"course_id": course_id, "score": digest[0], "report": str(report)}


def _wait(ctx: Context, client: httpx.Client, job_id: str) -> dict[str, Any]:
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["final"]:
            if job["status"] != "succeeded":
                raise RuntimeError(f"LLM call {job_id} ended {job['status']}: {job['error']}")
            result: dict[str, Any] = job["result"]
            return result
        if ctx.cancel_requested:
            client.post(f"/api/jobs/{job_id}/cancel")
            raise RuntimeError("cancelled while waiting for the LLM")
        time.sleep(0.05)
