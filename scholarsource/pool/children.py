"""The children running attempts create (ctx.submit) and their continuations
(ctx.continue_with), as the pool checks and batches them for the store (tasks/fanout.py says
what they mean to a task).

A slot checked each one already; the pool checks again, by the same rules, because what a
slot sends is its job's data: a message that fails here fails its attempt alone
(Dispatcher._refuse). The pool sets what a slot may not choose: the child's id (derived from
the parent's and its place), its tenant and its parent.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from scholarsource.config import Config
from scholarsource.errors import ValidationFailed
from scholarsource.pool.messages import Spawned
from scholarsource.store.base import Claim, NewJob, Spawn, TaskDefaults
from scholarsource.store.fanout import CONTINUATION, child_id
from scholarsource.tasks.fanout import parse_child


class Children:
    """Children waiting for the next batched write, and each running attempt's so far."""

    def __init__(self, config: Config, tasks: Mapping[str, TaskDefaults]) -> None:
        self._config = config
        self._tasks = tasks
        self.pending: list[Spawn] = []
        # Per running attempt: its children's ids, in submit order (a dict: an ordered set).
        self._ids: dict[tuple[str, int], dict[str, None]] = {}

    def take(self, claim: Claim, message: Spawned) -> None:
        """Queue the child one running attempt submitted, or raise ValueError for a message
        the pool cannot take."""
        job_id, token, key, body_json = message
        if not (isinstance(job_id, str) and isinstance(token, int)
                and isinstance(key, int) and isinstance(body_json, str)):
            raise ValueError("a malformed child")
        if (job_id, token) != (claim.id, claim.token):
            return  # from an attempt already taken back: its children are not written
        ids = self._ids.setdefault((claim.id, claim.token), {})
        if key != len(ids):
            raise ValueError(f"child {key} sent as child {len(ids)}")
        if key >= self._config.max_children:
            raise ValueError(f"more than {self._config.max_children} children")
        new = self._parse(claim, body_json, ids, self._config.max_parents, key)
        self.pending.append(Spawn(claim.id, claim.token, new))
        ids[new.id or ""] = None

    def continuation(self, claim: Claim, body_json: str) -> NewJob:
        """The continuation the attempt returned, or ValueError."""
        ids = self._ids.get((claim.id, claim.token), {})
        return self._parse(claim, body_json, ids, self._config.max_children, CONTINUATION)

    def forget(self, claim: Claim) -> None:
        """The attempt ended: it adds no more children."""
        self._ids.pop((claim.id, claim.token), None)

    def _parse(self, claim: Claim, body_json: str, siblings: dict[str, None],
               max_parents: int, key: int | str) -> NewJob:
        try:
            new = parse_child(json.loads(body_json), self._tasks, self._config, claim.tenant,
                              siblings.keys(), max_parents)
        except (ValueError, RecursionError, ValidationFailed) as exc:
            raise ValueError(f"a child the pool refuses: {exc}") from None
        return dataclasses.replace(new, id=child_id(claim.id, key), parent_id=claim.id)
