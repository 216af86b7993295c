"""create -> Running latency through the platform vs a direct docker-py create + start.

    .venv/bin/python -m bench.core.latency [--containers 30] [--trace]

Both sides run the same busybox image (made here with `docker import`, present locally so
nothing is pulled) with the same host config, one container at a time, taking turns (one of ours,
one direct) so that both meet the same load on a shared box. Ours is measured from
the HTTP POST to the moment the job turns succeeded in `ty_jobs` (a KV watch, no polling);
the baseline from `containers.create` to `start` returning. Containers are removed after.

`--trace` also prints, per hop, the median time from the POST at which this process saw each
message of the path go by on NATS (the command, the desired key, the nudge, the report, the job's
writes): where the time between the POST and Docker's work goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import time

import docker
import httpx
from nats.aio.msg import Msg
from tests.support import build_busybox, docker_as

from bench.harness import bearer, percentile, platform, report
from tingyu.cli.launcher import Platform
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.jobs import Job, JobState

# What the trace follows: (subject pattern, hop); a report or job write is named by what it says.
_TRACED = [
    (subjects.container_command.all, "command published"),
    (f"$KV.{subjects.DESIRED.name}.>", "desired key written"),
    ("ty.agent.*.nudge", "nudge sent"),
    (subjects.report.all, "report"),
    (f"$KV.{subjects.REPORTED.name}.>", "observed stored"),
    (f"$KV.{subjects.JOBS.name}.>", "job"),
]


class Trace:
    """When each message of one create's path went by on NATS, in seconds after its POST."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.name = ""
        self.start = 0.0
        self.current: dict[str, float] = {}
        self.creates: list[dict[str, float]] = []

    async def follow(self) -> None:
        for pattern, hop in _TRACED:

            async def seen(msg: Msg, hop: str = hop) -> None:
                self.seen(hop, msg)

            await self.bus.nc.subscribe(pattern, cb=seen)

    def begin(self, name: str, start: float) -> None:
        self.name, self.start, self.current = name, start, {}
        self.creates.append(self.current)

    def mark(self, hop: str) -> None:
        self.current.setdefault(hop, time.perf_counter() - self.start)

    def seen(self, hop: str, msg: Msg) -> None:
        if not self.name or (self.name not in msg.subject and self.name.encode() not in msg.data):
            return
        if hop in ("report", "observed stored"):
            mine = json.loads(msg.data)["containers"].get(self.name)
            hop = f"{hop}: {mine['phase'] if mine else 'without it'}"
        elif hop == "job":
            hop = f"job {JobState(json.loads(msg.data)['state']).name.lower()}"
        self.mark(hop)

    def medians(self) -> list[str]:
        hops = {hop for create in self.creates for hop in create}
        rows = [
            (
                statistics.median(c[hop] for c in self.creates if hop in c),
                hop,
                sum(hop in c for c in self.creates),
            )
            for hop in hops
        ]
        return [
            f"  {at * 1000:7.1f} ms  {hop} ({seen}/{len(self.creates)})" for at, hop, seen in sorted(rows)
        ]


async def job_done(bus: Bus, jobid: str) -> Job:
    async for _, job in bus.store(subjects.JOBS).watch(jobid):
        if job is not None and job.state.final:
            return job
    raise RuntimeError("watch ended")


async def ours(
    client: httpx.AsyncClient, bus: Bus, uuid: str, image: str, trace: Trace | None
) -> tuple[float, str]:
    """One create through the API until its job reads succeeded: the time and the name."""
    name = f"lat{secrets.token_hex(5)}"
    item = {"uuid": uuid, "image": image, "imageversion": "1", "deploymentname": name, "limitsmemory": 64}
    start = time.perf_counter()
    if trace is not None:
        trace.begin(name, start)
    answer = (await client.post("/container/create", json=[item])).json()["data"][0]
    if trace is not None:
        trace.mark("POST answered")
    job = await job_done(bus, answer["jobid"])
    took = time.perf_counter() - start
    if trace is not None:
        trace.mark("bench saw it succeed")
    assert job.state == JobState.SUCCEEDED, job
    return took, name


def direct(client: docker.DockerClient, image: str) -> float:
    """One docker-py create + start of the same image and host config (removed after)."""
    start = time.perf_counter()
    container = client.containers.create(
        f"{image}:1",
        name=f"direct{secrets.token_hex(5)}",
        network_mode="host",
        restart_policy={"Name": "always"},
        mem_limit=64 * 1024 * 1024,
    )
    container.start()
    took = time.perf_counter() - start
    container.remove(force=True)
    return took


async def alternately(
    running: Platform, client: docker.DockerClient, bus: Bus, image: str, count: int, *, trace: Trace | None
) -> tuple[list[float], list[float]]:
    """`count` creates of ours, each followed by one direct create+start, so that both sides meet the
    same load on a shared box; our containers stay until the end (the machine fills up), then go."""
    headers = bearer(running.config)
    uuid = await node_uuid(running.config.api_url, headers)
    mine, baseline, names = [], [], []
    async with httpx.AsyncClient(base_url=running.config.api_url, timeout=60, headers=headers) as http:
        for _ in range(count):
            took, name = await ours(http, bus, uuid, image, trace)
            mine.append(took)
            names.append(name)
            baseline.append(await asyncio.to_thread(direct, client, image))
        for name in names:
            await http.delete("/container/delete", params={"name": name})
    return mine, baseline


def push_busybox(client: docker.DockerClient, running: Platform, image: str) -> None:
    """Build the image and push it as the registry's pushing user (the registry wants a login)."""
    build_busybox(client, image, "1")
    docker_as(running, "imager", "push", f"{image}:1")


async def node_uuid(url: str, headers: dict[str, str]) -> str:
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        for _ in range(300):
            nodes = (await client.get("/node/list")).json()["data"]
            if nodes:
                return str(nodes[0]["uuid"])
            await asyncio.sleep(0.2)
    raise RuntimeError("the agent did not join")


async def run(count: int, trace: bool = False) -> list[str]:
    client = docker.from_env(timeout=120)
    with platform(("nodes", "deployer", "api", "agent"), TINGYU_AGENT_STOP_TIMEOUT_S="1") as running:
        image = f"{running.config.registry}/bench/busybox"
        await asyncio.to_thread(push_busybox, client, running, image)
        bus = await Bus.connect(running.config.admin_settings(), "bench")
        traced = Trace(bus) if trace else None
        if traced is not None:
            await traced.follow()
        mine, baseline = await alternately(running, client, bus, image, count, trace=traced)
        if traced is not None:
            print("median time after the POST at which each hop went by:", *traced.medians(), sep="\n")
            print(
                "each create (ms), ours / direct:",
                *(f"{a * 1000:.0f}/{b * 1000:.0f}" for a, b in zip(mine, baseline, strict=True)),
            )
        await bus.close()
    lines = [
        report(
            "create->Running p50",
            percentile(mine, 50) * 1000,
            percentile(baseline, 50) * 1000,
            "ms",
            "docker-py create+start",
        ),
        report(
            "create->Running p99",
            percentile(mine, 99) * 1000,
            percentile(baseline, 99) * 1000,
            "ms",
            "docker-py create+start",
        ),
    ]
    client.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--containers", type=int, default=30)
    parser.add_argument("--trace", action="store_true", help="print when each hop went by (median)")
    args = parser.parse_args()
    asyncio.run(run(args.containers, args.trace))


if __name__ == "__main__":
    main()
