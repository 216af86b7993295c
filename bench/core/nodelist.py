"""`/node/list` answered from the API's in-memory view vs a scan of the `ty_nodes` bucket (what
the API did per call before), with the API's memory.

    .venv/bin/python -m bench.core.nodelist [--nodes 100000] [--page-size 500] [--writes-per-s N]
                                            [--joins-per-s N]

Stand-in machine records (the simulator's facts: one NIC, one disk) are written straight into
`ty_nodes`; the API follows them. While the calls are timed, records are rewritten with a new
heartbeat time at `--writes-per-s` (default: one per machine per minute, what the nodes service
writes for a fleet this size with its 60 s lease), and new machines join at `--joins-per-s`
(default 2: a fleet is never still), so the view is applying changes meanwhile. A page is also
timed while full listings stream on the same worker: its longest time is how long a listing
holds the worker. The baseline is a bare scan of the bucket in this process (no HTTP, no
encoding), so the ratio flatters the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import urllib.parse

import psutil

from bench.harness import RawHttp, bearer, percentile, platform, report
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.nodes import NodeRecord
from tingyu.sim.machines import facts, identity


def stand_in(index: int, beat: float = 0.0) -> NodeRecord:
    node = facts(identity("nodelist", index), index)
    created = 1_700_000_000.0 + index
    return NodeRecord(
        facts=node, facts_digest=node.digest(), createtime=created, heartbeattime=max(created, beat)
    )


async def fill(bus: Bus, count: int) -> None:
    store = bus.store(subjects.NODES)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async def worker() -> None:
        while not queue.empty():
            record = stand_in(queue.get_nowait())
            await store.put(record.facts.uuid, record)

    await asyncio.gather(*(worker() for _ in range(256)))


async def refresh(bus: Bus, count: int, per_s: int, stop: asyncio.Event) -> None:
    """Rewrite machines' records with a new heartbeat time at `per_s`, round the fleet, until `stop`."""
    store = bus.store(subjects.NODES)
    index = 0
    while per_s and not stop.is_set():
        started = time.monotonic()
        batch = [stand_in((index + i) % count, time.time()) for i in range(max(1, per_s // 10))]
        index += len(batch)
        await asyncio.gather(*(store.put(record.facts.uuid, record) for record in batch))
        await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - started)))


async def join(bus: Bus, first: int, per_s: int, stop: asyncio.Event) -> int:
    """Register new machines (indexes from `first`) at `per_s` until `stop`; how many joined."""
    store = bus.store(subjects.NODES)
    index = first
    while per_s and not stop.is_set():
        record = stand_in(index)
        await store.put(record.facts.uuid, record)
        index += 1
        await asyncio.sleep(1 / per_s)
    return index - first


async def timed(client: RawHttp, path: str) -> tuple[float, int]:
    start = time.perf_counter()
    status, body = await client.request("GET", path)
    assert status == 200, body[:200]
    return time.perf_counter() - start, len(body)


async def pages_alongside(full: RawHttp, paging: RawHttp, root: str, page: str, lists: int) -> list[float]:
    """Times of one page asked again and again (on a connection of its own) while `lists` full
    listings stream on the same worker: the longest is how long a full listing holds its worker."""
    listing = asyncio.Event()

    async def lists_one_after_another() -> None:
        for _ in range(lists):
            await timed(full, f"{root}/node/list")
        listing.set()

    times = []
    lister = asyncio.create_task(lists_one_after_another())
    while not listing.is_set():
        times.append((await timed(paging, page))[0])
    await lister
    return times


def rss_mib(pid: int) -> float:
    process = psutil.Process(pid)
    return float(sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])) / 2**20


async def run(nodes: int, page_size: int, writes_per_s: int, joins_per_s: int) -> list[str]:
    with platform(("api",), TINGYU_API_WORKERS="1") as running:
        bus = await Bus.connect(running.config.admin_settings(), "bench")
        await fill(bus, nodes)
        url = urllib.parse.urlsplit(running.config.api_url)
        client = RawHttp(url.hostname or "127.0.0.1", url.port or 80, bearer(running.config))
        root = url.path
        for _ in range(600):  # until the view holds them all
            status, body = await client.request("GET", f"{root}/node/list?page={nodes}&pageSize=1")
            if status == 200 and b'"uuid"' in body:
                break
            await asyncio.sleep(0.5)
        stop = asyncio.Event()
        writer = asyncio.create_task(refresh(bus, nodes, writes_per_s, stop))
        joiner = asyncio.create_task(join(bus, nodes, joins_per_s, stop))
        full = [await timed(client, f"{root}/node/list") for _ in range(3)]
        pages = [
            await timed(
                client, f"{root}/node/list?page={1 + i * 7 % max(1, nodes // page_size)}&pageSize={page_size}"
            )
            for i in range(50)
        ]
        paging = RawHttp(url.hostname or "127.0.0.1", url.port or 80, bearer(running.config))
        page = f"{root}/node/list?page=2&pageSize={page_size}"
        alongside = await pages_alongside(client, paging, root, page, 3)
        await paging.close()
        scans = []
        for _ in range(3):
            start = time.perf_counter()
            found = await bus.store(subjects.NODES).values()
            scans.append(time.perf_counter() - start)
        api_rss = rss_mib(running.procs["api"].popen.pid)
        stop.set()
        await writer
        joined = await joiner
        await client.close()
        await bus.close()
    best_full = min(seconds for seconds, _ in full)
    lines = [
        report(
            f"/node/list, all {nodes} machines ({full[0][1] / 2**20:.0f} MiB)",
            best_full,
            min(scans),
            "s",
            f"bare scan of ty_nodes ({len(found)} records)",
        ),
        report(
            f"/node/list one {page_size}-machine page p99",
            percentile([seconds for seconds, _ in pages], 99) * 1000,
            min(scans) * 1000,
            "ms",
            "bare scan of ty_nodes",
        ),
        report(
            f"/node/list one {page_size}-machine page, longest while full lists stream",
            max(alongside) * 1000,
            percentile([seconds for seconds, _ in pages], 99) * 1000,
            "ms",
            "the page's p99 alone",
        ),
    ]
    print(
        f"pages asked while 3 full lists streamed: {len(alongside)}, p50 "
        f"{percentile(alongside, 50) * 1000:.1f} ms",
        flush=True,
    )
    print(f"API RSS (one worker, views loaded): {api_rss:.0f} MiB", flush=True)
    print(f"record rewrites while timed: {writes_per_s}/s; machines joined: {joined}", flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--writes-per-s", type=int, default=-1, help="default: one per machine per 60 s")
    parser.add_argument("--joins-per-s", type=int, default=2, help="new machines registered per second")
    args = parser.parse_args()
    writes = args.nodes // 60 if args.writes_per_s < 0 else args.writes_per_s
    asyncio.run(run(args.nodes, args.page_size, writes, args.joins_per_s))


if __name__ == "__main__":
    main()
