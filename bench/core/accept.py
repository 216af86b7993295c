"""Container-create commands accepted per second through the API vs raw JetStream publishes.

    .venv/bin/python -m bench.core.accept [--requests 2000] [--concurrency 32] [--items 1] [--machines 200]

Both sides run in this process against the same nats-server, with the same concurrency. The API
side is the whole accept path: HTTP, validation, node/name/image lookups in KV, the job record and
the durable publish. A heartbeating stand-in machine (marked simulated) is what the creates target;
nothing runs containers, so the deployer only writes desired state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
import urllib.parse

import httpx
import psutil

from bench.harness import RawHttp, bearer, platform, report
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.models.containers import ContainerCommand, ContainerOp, ContainerSpec
from tingyu.common.models.nodes import Heartbeat, NodeFacts
from tingyu.common.names import new_job_id, new_node_identity

IMAGE = "127.0.0.1:5000/bench/busybox"
IDLE_S = 3.0  # how long the API's CPU is watched with no request, to subtract its background work


async def beat_forever(bus: Bus, fleet: list[NodeFacts]) -> None:
    while True:
        for facts in fleet:
            hb = Heartbeat(
                uuid=facts.uuid,
                facts_digest=facts.digest(),
                facts=facts,
                sent_at=timefmt.now(),
                simulated=True,
            )
            await bus.emit(subjects.heartbeat(facts.uuid), hb)
        await asyncio.sleep(1.0)


def body(uuid: str, items: int) -> list[dict[str, object]]:
    return [
        {
            "uuid": uuid,
            "image": IMAGE,
            "imageversion": "1",
            "deploymentname": f"b{secrets.token_hex(6)}",
            "requestscpu": 0.1,
            "requestsmemory": 16,
            "limitscpu": 0.5,
            "limitsmemory": 64,
        }
        for _ in range(items)
    ]


async def api_rate(
    url: str, uuids: list[str], requests: int, concurrency: int, items: int, *, headers: dict[str, str]
) -> float:
    parsed = urllib.parse.urlsplit(url)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker() -> None:
        client = RawHttp(parsed.hostname or "127.0.0.1", parsed.port or 80, headers)
        try:
            while not queue.empty():
                i = queue.get_nowait()
                payload = json.dumps(body(uuids[i % len(uuids)], items)).encode()
                status, answer = await client.request("POST", f"{parsed.path}/container/create", payload)
                results = json.loads(answer)["data"]
                assert status == 200, answer
                assert all(r["code"] == 200 for r in results), answer
        finally:
            await client.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests * items / (time.perf_counter() - start)


async def raw_rate(bus: Bus, uuid: str, requests: int, concurrency: int, items: int) -> float:
    await bus.js.add_stream(name="BENCH_RAW", subjects=["bench.raw.>"])
    spec = ContainerSpec(image=IMAGE, imageversion="1", image_ref=f"{IMAGE}:1")
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests * items):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            job_id = new_job_id()
            command = ContainerCommand(
                job_id=job_id, op=ContainerOp.CREATE, name="x", node_uuid=uuid, spec=spec, issued_at=0.0
            )
            await bus.publish(f"bench.raw.{job_id}", command, msg_id=job_id)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests * items / (time.perf_counter() - start)


def cpu_of(process: psutil.Process) -> float:
    """CPU seconds used so far by `process` and its children (the API's workers)."""
    total = 0.0
    for one in [process, *process.children(recursive=True)]:
        try:
            times = one.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def stand_in(index: int) -> NodeFacts:
    uuid, nodename = new_node_identity()
    return NodeFacts(uuid=uuid, nodename=nodename, area="南京", operator="移动", cpu=8, memory=16384)


async def run(requests: int, concurrency: int, items: int, machines: int) -> list[str]:
    # The image is never pulled; the edge policy must allow its registry all the same.
    with platform(
        ("nodes", "deployer", "api"), TINGYU_POLICY_REGISTRIES=IMAGE.split("/", maxsplit=1)[0]
    ) as running:
        bus = await Bus.connect(running.config.admin_settings(), "bench")
        fleet = [stand_in(i) for i in range(machines)]
        beating = asyncio.create_task(beat_forever(bus, fleet))
        headers = bearer(running.config)
        async with httpx.AsyncClient(base_url=running.config.api_url, headers=headers) as client:
            for _ in range(100):
                answer = (await client.get("/node/list")).json()
                if len(answer["data"]) == machines:
                    break
                await asyncio.sleep(0.2)
        uuids = [facts.uuid for facts in fleet]
        api = psutil.Process(running.procs["api"].popen.pid)
        # What the API spends with no request (the stand-ins' heartbeats reach its views), per second.
        idle_cpu, idle_start = cpu_of(api), time.perf_counter()
        await asyncio.sleep(IDLE_S)
        idle_rate = (cpu_of(api) - idle_cpu) / (time.perf_counter() - idle_start)
        api_cpu, own_cpu, started = cpu_of(api), time.process_time(), time.perf_counter()
        ours = await api_rate(running.config.api_url, uuids, requests, concurrency, items, headers=headers)
        api_cpu, own_cpu = cpu_of(api) - api_cpu, time.process_time() - own_cpu
        net_cpu = api_cpu - idle_rate * (time.perf_counter() - started)
        raw_cpu = time.process_time()
        raw = await raw_rate(bus, uuids[0], requests, concurrency, items)
        raw_cpu = time.process_time() - raw_cpu
        beating.cancel()
        await bus.close()
    title = f"creates accepted ({items} item(s)/request, {concurrency} concurrent)"
    commands = requests * items
    print(
        f"CPU per accepted create: API {1000 * api_cpu / commands:.3f} ms (all its processes), "
        f"{1000 * net_cpu / commands:.3f} ms without its idle {100 * idle_rate:.1f} % of a core; "
        f"bench client {1000 * own_cpu / commands:.3f} ms; "
        f"per raw publish: {1000 * raw_cpu / commands:.3f} ms",
        flush=True,
    )
    return [report(title, ours, raw, "commands/s", "raw JetStream publish")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--items", type=int, default=1)
    parser.add_argument("--machines", type=int, default=200, help="stand-in machines the creates spread over")
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.concurrency, args.items, args.machines))


if __name__ == "__main__":
    main()
