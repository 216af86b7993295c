"""`/node/list` answered from the API's in-memory view vs a scan of the `ty_nodes` bucket (what
the API did per call before), with the API's memory.

    .venv/bin/python -m bench.core.nodelist [--nodes 100000] [--page-size 500]

Stand-in machine records are written straight into `ty_nodes`; the API follows them. The baseline
is a bare scan of the bucket in this process (no HTTP, no encoding), so the ratio flatters the
baseline.
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
from tingyu.common.models.nodes import NodeFacts, NodeRecord
from tingyu.common.names import new_node_identity


def stand_in(index: int) -> NodeRecord:
    uuid, nodename = new_node_identity()
    facts = NodeFacts(
        uuid=uuid, nodename=nodename, area=("南京", "苏州")[index % 2], operator="移动", cpu=8, memory=16384
    )
    created = 1_700_000_000.0 + index
    return NodeRecord(facts=facts, facts_digest=facts.digest(), createtime=created, heartbeattime=created)


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


async def timed(client: RawHttp, path: str) -> tuple[float, int]:
    start = time.perf_counter()
    status, body = await client.request("GET", path)
    assert status == 200, body[:200]
    return time.perf_counter() - start, len(body)


def rss_mib(pid: int) -> float:
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


async def run(nodes: int, page_size: int) -> list[str]:
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
        full = [await timed(client, f"{root}/node/list") for _ in range(3)]
        pages = [
            await timed(
                client, f"{root}/node/list?page={1 + i * 7 % max(1, nodes // page_size)}&pageSize={page_size}"
            )
            for i in range(50)
        ]
        scans = []
        for _ in range(3):
            start = time.perf_counter()
            found = await bus.store(subjects.NODES).values()
            scans.append(time.perf_counter() - start)
        api_rss = rss_mib(running.procs["api"].popen.pid)
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
    ]
    print(f"API RSS (one worker, views loaded): {api_rss:.0f} MiB", flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(run(args.nodes, args.page_size))


if __name__ == "__main__":
    main()
