"""Per-item work of one request runs concurrently, a bounded number at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def gather_bounded(work: list[Awaitable[T]], limit: int = 32) -> list[T]:
    """Await every item with at most `limit` in flight; results keep the order of `work`."""
    if len(work) == 1:  # most requests name one item: no semaphore, no tasks
        return [await work[0]]
    gate = asyncio.Semaphore(limit)

    async def gated(item: Awaitable[T]) -> T:
        async with gate:
            return await item

    return await asyncio.gather(*(gated(item) for item in work))
