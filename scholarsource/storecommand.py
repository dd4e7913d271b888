"""What a command that works on the configured store directly (`keys`, `tenants`) shares:
open the store for one action, check its schema, close it, and turn a store error into one
line on stderr and EXIT_FAILURE."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from scholarsource.config import Config
from scholarsource.errors import ScholarSourceError
from scholarsource.exitcodes import EXIT_FAILURE
from scholarsource.store.base import Store
from scholarsource.store.factory import open_store, where

T = TypeVar("T")


def on_store(config: Config, action: Callable[[Store], Awaitable[T]]) -> T:
    """Run `action` on the configured store and return what it returns."""

    async def main() -> T:
        store = await open_store(config, "cli")
        try:
            if problem := (await store.schema_version()).problem():
                raise ScholarSourceError(problem)
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except ScholarSourceError as exc:
        click.echo(f"error: {where(config)}: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
