"""The metrics that events increment (see scholarsource/metrics/__init__.py for the mode)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Jobs run from milliseconds to hours.
JOB_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0,
               3600.0, 7200.0, 21600.0, float("inf"))

JOBS_STARTED = Counter("scholarsource_jobs_started", "Attempts started, by task.", ["task"])
JOBS_ENDED = Counter(
    "scholarsource_jobs_ended",
    "Attempts ended, by task and the state each left its job in (succeeded, retrying, "
    "dead, cancelled).",
    ["task", "outcome"])
JOB_WAIT = Histogram("scholarsource_job_wait_seconds",
                     "From submit to the start of an attempt, by task.", ["task"],
                     buckets=JOB_BUCKETS)
JOB_RUN = Histogram("scholarsource_job_run_seconds", "How long attempts ran, by task.",
                    ["task"], buckets=JOB_BUCKETS)
POOL_RESTARTS = Counter("scholarsource_pool_restarts",
                        "Times the master started a new pool after the first.")
HTTP_REQUESTS = Counter("scholarsource_http_requests", "HTTP requests, by route and status.",
                        ["route", "method", "status"])
HTTP_LATENCY = Histogram("scholarsource_http_request_duration_seconds",
                         "HTTP request latency, by route.", ["route"])
REJECTED = Counter("scholarsource_rejected_requests",
                   "Requests refused, by reason (the error code of the answer).", ["reason"])
# Job event streams (SSE): each API worker's one reader (api/fanout.py).
EVENT_STREAMS = Gauge("scholarsource_event_streams", "Job event streams open (SSE).",
                      multiprocess_mode="livesum")
EVENT_READS = Counter("scholarsource_event_reads",
                      "Reads of job events by the API workers' event readers: one statement "
                      "each, for every stream the worker serves.")
EVENT_STREAMS_DROPPED = Counter("scholarsource_event_streams_dropped",
                                "Event streams closed because their client fell more than "
                                "events_buffer events behind (it resumes with Last-Event-ID).")
