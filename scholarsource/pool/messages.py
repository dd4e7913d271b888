"""What the pool and a slot send each other over the slot's pipe.

NamedTuples: they pickle as small as a tuple and nearly as fast (~2 µs a message, with
`send`), which matters on a path that costs the pool ~350 µs of CPU per job in all (`python
bench/drain.py`). What a slot sends is its job's data, so the dispatcher checks each
message's type and fields before it believes one (`Dispatcher._take`).
"""

from __future__ import annotations

import pickle
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from scholarsource.store.base import Artifact, ErrorCode


class Attempt(NamedTuple):
    """Pool → slot: run this attempt (the params as the store's JSON text)."""

    task: str
    params_json: str
    job_id: str
    attempt: int
    token: int
    parents_json: str | None = None  # {parent id: result}, for a job that has parents
    parent_artifacts: dict[str, list[Artifact]] | None = None  # each parent's, if it has any


class Report(NamedTuple):
    """Slot → pool: a running attempt's progress or log line."""

    job_id: str
    token: int
    kind: str  # "progress" | "log"
    data: dict[str, Any]


class Spawned(NamedTuple):
    """Slot → pool: the running attempt's ctx.submit of its child `key` (tasks/fanout.py),
    the submit body as JSON, checked in the slot and checked again by the pool."""

    job_id: str
    token: int
    key: int
    body_json: str


class Ended(NamedTuple):
    """Slot → pool: how the attempt holding `token` ended."""

    token: int
    code: ErrorCode | None     # None: the task returned
    value: str | None          # the result as JSON, or the error message
    detail: str | None = None  # a task error's traceback
    after: float | None = None  # Retry(after=...): seconds before the next attempt
    peak: int | None = None    # the process's peak RSS during the attempt, bytes
    cpu: float = 0.0           # CPU seconds of the attempt (its process and children)
    # A success's files (pool/artifacts.py): (name, size, sha256, content type) each.
    artifacts: tuple[tuple[str, int, str, str], ...] = ()
    then: str | None = None    # ctx.continue_with's submit body, as JSON


def send(conn: Connection, message: Attempt | Report | Spawned | Ended) -> None:
    """Send one message. Not Connection.send: it pickles with multiprocessing's
    ForkingPickler, whose reducer table (a ChainMap, searched in Python for each object that
    is not a builtin type) costs a NamedTuple ~1.5 µs more; these messages need none of its
    reducers."""
    conn.send_bytes(pickle.dumps(message))
