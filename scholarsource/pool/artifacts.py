"""The pool's side of artifacts (scholarsource/artifacts.py): settle an attempt's files in its
slot, take them into its outcome, delete what failed, keep the disk budget, and sweep and
bury what no job keeps (the sweep itself: pool/sweep.py).

Deletions run off the dispatcher's loop (a thread), and none of this runs for an attempt
that never called `ctx.artifact`: a job without files costs the pool what it did before.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

from scholarsource import artifacts
from scholarsource.config import Config, format_size
from scholarsource.errors import StoreUnavailable
from scholarsource.pool.messages import Ended
from scholarsource.pool.sweep import Sweep
from scholarsource.store.base import Artifact, Claim, ErrorCode, Store

log = logging.getLogger("scholarsource.pool")

# Graves the pruner handles per turn (one directory each).
GRAVES_PER_TURN = 200


def settle(ended: Ended, directory: Path, max_bytes: int) -> Ended:
    """In the slot, once the task has ended: a success's files, checked, hashed and made
    read-only here (not on the pool's loop), go with it; any other end deletes them. Files
    over `max_bytes` or that are not plain files fail the attempt instead."""
    if ended.code is not None:
        artifacts.discard(directory)
        return ended
    try:
        produced = artifacts.collect(directory, max_bytes)
    except (artifacts.ArtifactTooLarge, artifacts.ArtifactRefused) as exc:
        artifacts.discard(directory)
        code = (ErrorCode.ARTIFACT_TOO_LARGE if isinstance(exc, artifacts.ArtifactTooLarge)
                else ErrorCode.BAD_ARTIFACT)
        return Ended(ended.token, code, code.explain(str(exc)))
    return ended._replace(artifacts=tuple(
        (p.name, p.size, p.sha256, p.content_type) for p in produced))


def well_formed(entries: object) -> bool:
    """Whether what a slot sent as its attempt's artifacts can be believed: a tuple of
    (name, size, sha256, content type), each name one the API may serve."""
    if type(entries) is not tuple:
        return False
    for entry in entries:
        if not (type(entry) is tuple and len(entry) == 4 and type(entry[1]) is int
                and all(type(entry[i]) is str for i in (0, 2, 3))):
            return False
        try:
            artifacts.check_name(entry[0])
        except ValueError:
            return False
    return True


def received(claim: Claim, entries: tuple[tuple[str, int, str, str], ...]
             ) -> tuple[Artifact, ...]:
    """A success's artifacts (`well_formed` already checked them), where its attempt left
    them."""
    return tuple(Artifact(name, size, sha256, kind,
                          artifacts.relative_path(claim.id, claim.attempt, name))
                 for name, size, sha256, kind in entries)


class Files:
    """The artifacts directory as the dispatcher sees it: what to delete, and whether there
    is room to start another job."""

    def __init__(self, root: Path, max_bytes: int, budget: int,
                 sweep_interval: float) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.budget = budget
        self.state: dict[str, Any] = {}  # why no job starts (shown by /api/health)
        self.sweeper = Sweep(root, sweep_interval)  # the dispatcher steps it each turn

    @classmethod
    def of(cls, config: Config) -> Files:
        return cls(config.artifacts_path, config.max_artifact_bytes,
                   config.artifacts_budget_bytes, config.artifacts_sweep_interval)

    def discard(self, claim: Claim) -> None:
        """Delete an attempt's files (it failed, or its success was not recorded), on a
        thread: the loop never waits for a big directory."""
        directory = artifacts.attempt_dir(self.root, claim.id, claim.attempt)
        asyncio.get_running_loop().run_in_executor(None, artifacts.discard, directory)

    @property
    def full(self) -> bool:
        """True while no job may start: the budget is spent, or the disk nearly full."""
        return bool(self.state)

    async def refresh(self, store: Store) -> None:
        """Read what artifacts use and what the disk has free (the heartbeat does)."""
        try:
            used = await store.artifact_bytes() if self.budget else 0
        except StoreUnavailable as exc:
            log.warning("cannot read the artifacts' disk use: %s", exc)
            return
        disk = shutil.disk_usage(_existing(self.root))
        # Room for one more job's files, but on a disk under 20 of them, a twentieth of it:
        # a small disk must not hold every job of a server that writes no artifacts.
        floor = min(self.max_bytes, disk.total // 20)
        free = disk.free
        state: dict[str, Any] = {}
        if self.budget and used >= self.budget:
            state = {"waiting_for_artifact_space": True, "artifact_bytes": used,
                     "reason": f"artifacts use {format_size(used)}, the whole "
                               f"artifacts_budget_bytes ({format_size(self.budget)})"}
        elif free < floor:
            limit = ("max_artifact_bytes" if floor == self.max_bytes
                     else "a twentieth of the disk")
            state = {"waiting_for_artifact_space": True, "disk_free": free,
                     "reason": f"{format_size(free)} free on the artifacts' disk, less than "
                               f"{limit} ({format_size(floor)})"}
        if state and not self.state:
            log.warning("starting no job until retention frees room: %s", state["reason"])
        elif self.state and not state:
            log.info("room for artifacts again: starting jobs")
        self.state = state

    async def sweep(self, store: Store) -> int:
        """A whole sweep now (the pool's start): delete the attempt directories no job
        keeps; returns how many."""
        return await self.sweeper.run(store)

    async def bury(self, store: Store) -> int:
        """Delete the files of jobs the store deleted (its graves); returns how many jobs'."""
        graves = await store.graves(GRAVES_PER_TURN)
        for job_id in graves:
            if _one_component(job_id):
                await asyncio.to_thread(shutil.rmtree, self.root / job_id, True)
        # Forget only the graves whose files are gone: a delete that failed (EACCES, a
        # flaky mount) is tried again next time, not left to the next pool's sweep.
        gone = [job_id for job_id in graves
                if not _one_component(job_id) or not (self.root / job_id).exists()]
        if gone:
            await store.bury(gone)
        return len(gone)


def _one_component(job_id: str) -> bool:
    """Whether a job id names a directory inside the root (an imported id could be
    anything)."""
    try:
        artifacts.check_name(job_id)
    except ValueError:
        return False
    return True


def _existing(path: Path) -> Path:
    """`path`, or its nearest parent that exists (disk_usage needs one)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path
