"""What the client returns: jobs, pages of jobs and job events, typed from the server's JSON."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from scholarsource.store.base import JobState

__all__ = ["Event", "Job", "JobPage", "JobState", "Workflow"]


@dataclass(frozen=True)
class Job:
    """A job as the server answered it (GET /api/jobs/{id}); `final` is true once it will
    not run again. `raw` is the JSON itself, with any field this client does not know."""

    id: str
    task: str
    status: JobState
    final: bool
    tenant: str = "default"
    queue: str = "default"
    priority: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    error_code: str | None = None
    attempts: int = 0
    max_attempts: int | None = None
    failures: int = 0
    crashes: int = 0
    timeout: float | None = None
    memory_limit: int | None = None
    backoff_base: float | None = None
    backoff_max: float | None = None
    progress: float | None = None
    progress_message: str | None = None
    cancel_requested: bool = False
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    run_at: float | None = None
    wait_time: float | None = None
    run_time: float | None = None
    cpu_time: float | None = None
    peak_rss: int | None = None
    attempts_history: list[dict[str, Any]] = field(default_factory=list)
    idempotency_key: str | None = None
    cache_ttl: float | None = None
    bypass_cache: bool = False
    unique: bool = False
    schedule: str | None = None
    scheduled_for: float | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    depends_on: list[str] = field(default_factory=list)
    on_parent_failure: str = "cancel"
    workflow_id: str | None = None
    step: str | None = None
    parent_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Job:
        """Read a job's JSON; fields a newer server adds stay in `raw`."""
        known = {f.name for f in fields(cls)} - {"status", "raw"}
        return cls(status=JobState(body["status"]), raw=body,
                   **{name: value for name, value in body.items() if name in known})


@dataclass(frozen=True)
class JobPage:
    """One page of GET /api/jobs: the jobs, newest first, and the cursor of the next page
    (None on the last)."""

    jobs: list[Job]
    next_cursor: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> JobPage:
        """Read a page's JSON."""
        return cls([Job.from_json(job) for job in body["jobs"]], body.get("next_cursor"))


@dataclass(frozen=True)
class Event:
    """One event of a job's stream: `kind` is `state`, `progress`, `log`...; `data` is its
    JSON (`job_id`, `at` and the kind's own fields)."""

    id: int
    kind: str
    data: dict[str, Any]

    @property
    def status(self) -> JobState | None:
        """The state a `state` event moved the job to."""
        return JobState(self.data["status"]) if self.kind == "state" else None

    @property
    def final(self) -> bool:
        """True for the event that ended the job."""
        return self.kind == "state" and bool(self.data.get("final"))


@dataclass(frozen=True)
class Workflow:
    """A workflow as the server answered it: its `id` and each step's job id (`steps`);
    from GET /api/workflows/{id} also its `status` (running, succeeded, failed, cancelled),
    `final`, `progress` and each step's state and result (`raw["steps"]`)."""

    id: str
    steps: dict[str, str]
    status: str = "running"
    final: bool = False
    progress: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Workflow:
        """Read a created workflow's answer ({id, steps}) or a workflow's JSON."""
        steps = {name: step if isinstance(step, str) else step["id"]
                 for name, step in body["steps"].items()}
        return cls(body["id"], steps, body.get("status", "running"),
                   bool(body.get("final", False)), body.get("progress", {}), body)

    def result(self, step: str) -> Any:
        """A step's result, as GET /api/workflows/{id} last showed it."""
        return self.raw["steps"][step]["result"]
