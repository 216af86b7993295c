"""The service skeleton's wait: a stop is seen even when the work before it left no time to wait."""

from __future__ import annotations

import asyncio

from tingyu.common.service import wait_or_stop


async def test_a_stop_is_seen_with_no_time_left_to_wait() -> None:
    stop = asyncio.Event()
    stop.set()
    assert await wait_or_stop(stop, 0.0)
    assert not await wait_or_stop(asyncio.Event(), 0.0)
