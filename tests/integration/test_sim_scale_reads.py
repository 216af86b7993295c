"""Reads the fleet benchmark leans on: a bucket scan under steady writes ends and lists each key once."""

from __future__ import annotations

import asyncio

from tests.conftest import unique
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

        async def rewrite(rounds: int) -> None:
            for _ in range(rounds):
                for key in keys[:200]:
                    await kv.put(key, NodeFacts(uuid=key, nodename=key, cpu=1).to_bytes())

        writer = asyncio.create_task(rewrite(15))
        await asyncio.sleep(0.1)
        listed = await asyncio.wait_for(bus.store(subjects.BucketSpec(name, NodeFacts)).values(), 20)
        assert not writer.done()  # the scan really ran during the writes
        await writer
        assert sorted(f.uuid for f in listed) == sorted(keys)
    finally:
        await bus.js.delete_key_value(name)
        await bus.close()
