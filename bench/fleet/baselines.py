"""Raw NATS figures from the same run: what the platform's own numbers are compared with."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable

from nats.js.kv import KeyValue

from bench.harness import percentile
from tingyu.common.bus import Bus


async def core_publish_rate(bus: Bus, payload: bytes, count: int = 200_000) -> float:
    """Core-NATS publishes per second of one client (a heartbeat's payload, nobody listening)."""
    subject = f"bench.raw.hb.{secrets.token_hex(4)}"
    start = time.perf_counter()
    for _ in range(count):
        await bus.nc.publish(subject, payload)
    await bus.nc.flush()
    return count / (time.perf_counter() - start)


async def timed(op: Callable[[int], Awaitable[object]], requests: int, concurrency: int) -> list[float]:
    """Latencies in ms of `requests` calls of `op(i)` made by `concurrency` workers."""
    latencies: list[float] = []
    queue = iter(range(requests))

    async def worker() -> None:
        for i in queue:
            start = time.perf_counter()
            await op(i)
            latencies.append((time.perf_counter() - start) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def raw_kv(bus: Bus, requests: int, concurrency: int, value: bytes) -> tuple[list[float], list[float]]:
    """(put, get) latencies in ms on a scratch bucket with the same payload size."""
    name = f"bench_raw_{secrets.token_hex(3)}"
    kv: KeyValue = await bus.js.create_key_value(bucket=name)
    try:
        puts = await timed(lambda i: kv.put(f"k{i}", value), requests, concurrency)
        gets = await timed(lambda i: kv.get(f"k{i}"), requests, concurrency)
    finally:
        await bus.js.delete_key_value(name)
    return puts, gets


def p50_p99(values: list[float]) -> tuple[float, float]:
    return percentile(values, 50), percentile(values, 99)
