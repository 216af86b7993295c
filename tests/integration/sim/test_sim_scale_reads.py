"""Reads the fleet benchmark leans on: a bucket scan under steady writes ends and lists each key once."""

from __future__ import annotations

import asyncio

from tests.support import unique
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.nodes import NodeFacts
from tingyu.common.settings import PlatformSettings


async def test_scan_during_writes_lists_each_key_once(nats_url: str) -> None:
    bus = await Bus.connect(PlatformSettings(nats_url=nats_url), "tingyu-tests", ensure=False)
    name = unique("scan")
    kv = await bus.js.create_key_value(bucket=name)
    try:
        keys = [f"k{i}" for i in range(3000)]
        for key in keys:
            await kv.put(key, NodeFacts(uuid=key, nodename=key).to_bytes())

        writing = asyncio.Event()
        scanned = asyncio.Event()
        written = 0

        async def rewrite() -> None:
            """Rewrite the first keys over and over until the scan has ended."""
            nonlocal written
            while not scanned.is_set():
                for key in keys[:200]:
                    await kv.put(key, NodeFacts(uuid=key, nodename=key, cpu=written % 8).to_bytes())
                    written += 1
                    writing.set()

        writer = asyncio.create_task(rewrite())
        await asyncio.wait_for(writing.wait(), 20)
        before = written
        listed = await asyncio.wait_for(bus.store(subjects.BucketSpec(name, NodeFacts)).values(), 20)
        scanned.set()
        assert written > before  # the scan really ran during the writes
        await asyncio.wait_for(writer, 20)
        assert sorted(f.uuid for f in listed) == sorted(keys)
    finally:
        await bus.js.delete_key_value(name)
        await bus.close()
