"""Which tasks a submit may name, as the pool last published them (no task code imported)."""

from __future__ import annotations

import time

from scholarsource.store.base import Store, TaskDefaults

# A name we do not know triggers a re-read at most this often, so a flood of bad names
# cannot turn into a flood of queries; known names are re-read this often regardless.
_MISS_REFRESH = 1.0
_MAX_AGE = 30.0


class Catalog:
    """A per-worker cache of the published task registry."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._tasks: dict[str, TaskDefaults] = {}
        self._loaded_at = float("-inf")

    async def lookup(self, name: str) -> TaskDefaults | None:
        """The task's defaults, or None if no such task is registered."""
        age = time.monotonic() - self._loaded_at
        if age > _MAX_AGE or (name not in self._tasks and age > _MISS_REFRESH):
            await self._refresh()
        return self._tasks.get(name)

    async def names(self) -> list[str]:
        """Every registered task name, sorted (re-read at most once a second)."""
        return sorted(await self.tasks())

    async def tasks(self) -> dict[str, TaskDefaults]:
        """Every registered task (re-read at most once a second)."""
        if time.monotonic() - self._loaded_at > _MISS_REFRESH:
            await self._refresh()
        return dict(self._tasks)

    async def _refresh(self) -> None:
        self._tasks = await self._store.tasks()
        self._loaded_at = time.monotonic()
