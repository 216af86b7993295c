"""The load a cluster test runs while it kills things: API probes, writes retried only when refused
with TY0010, and metering samples published until acknowledged. Each records what happened, so
the test can check afterwards that nothing accepted was lost or doubled."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.metering import Sample, SampleBatch

UNAVAILABLE = "TY0010"


@dataclass(frozen=True)
class Probe:
    """One read of the API: when, which replica, and the contract code (or the transport error)."""

    at: float
    replica: int
    code: str


@dataclass
class Prober:
    """Reads `/node/get` on every API replica every `every` seconds until stopped."""

    apis: list[httpx.AsyncClient]
    node: str
    every: float = 0.2
    probes: list[Probe] = field(default_factory=list)
    gone: dict[int, float] = field(default_factory=dict)  # replica -> when the test killed it

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.gather(*(self._probe(i) for i in range(len(self.apis)) if i not in self.gone))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)

    async def _probe(self, replica: int) -> None:
        at = time.monotonic()
        try:
            response = await self.apis[replica].get("/node/get", params={"name": self.node}, timeout=15)
            code = str(response.json().get("code"))
        except (httpx.HTTPError, ValueError) as exc:
            code = type(exc).__name__
        if replica not in self.gone:
            self.probes.append(Probe(at, replica, code))

    def failures(self, since: float = 0.0) -> list[Probe]:
        return [p for p in self.probes if p.code != "200" and p.at >= since]

    def window(self, since: float, until: float) -> float:
        """Seconds from the first to the last failed probe in [since, until] (0 when none failed)."""
        failed = [p.at for p in self.probes if p.code != "200" and since <= p.at <= until]
        return max(failed) - min(failed) if failed else 0.0


@dataclass
class Writes:
    """Writes through the API, each retried (on the other replica too) while it answers TY0010.

    `accepted` holds every job the API accepted, by what it was for; `seen` the last status read of
    each; `refusals` counts every TY0010."""

    apis: list[httpx.AsyncClient]
    accepted: dict[str, str] = field(default_factory=dict)  # job id -> what
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)  # job id -> its last status
    refusals: int = 0
    alive: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.alive = list(range(len(self.apis)))

    async def call(self, what: str, method: str, url: str, *, deadline_s: float = 120, **kw: Any) -> Any:
        """The answer of the first attempt that was not a TY0010 or a transport error."""
        end = time.monotonic() + deadline_s
        attempt = 0
        while True:
            client = self.apis[self.alive[attempt % len(self.alive)]]
            attempt += 1
            try:
                answer = (await client.request(method, url, **kw)).json()
            except httpx.HTTPError:
                answer = {"code": UNAVAILABLE}
            if UNAVAILABLE not in (answer.get("code"), *_item_codes(answer)):
                return answer
            self.refusals += 1
            assert time.monotonic() < end, f"{what}: still unavailable after {deadline_s}s: {answer}"
            await asyncio.sleep(0.5)

    async def create(self, uuid: str, name: str, image: tuple[str, str]) -> str:
        item = {"uuid": uuid, "image": image[0], "imageversion": image[1], "deploymentname": name}
        answer = await self.call(f"create {name}", "POST", "/container/create", json=[item])
        [result] = answer["data"]
        assert result["code"] == 200, (name, answer)
        self.accepted[result["jobid"]] = f"create {name}"
        return str(result["jobid"])

    async def rollout(self, request: dict[str, Any]) -> str:
        answer = await self.call("rollout", "PUT", "/container/updateByInherit", json=request)
        assert answer["code"] == 200, answer
        self.accepted[answer["jobid"]] = "rollout"
        return str(answer["jobid"])

    async def upload(self, tar: bytes, name: str, version: str) -> str:
        params = {
            "image_name": name,
            "version": version,
            "detail": "cluster",
            "image_url": f"http://x/{name}",
        }
        headers = {"Content-Type": "application/x-tar"}
        answer = await self.call(
            f"upload {name}", "POST", "/image/uploadImage", params=params, content=tar, headers=headers
        )
        assert answer["code"] == 200, answer
        self.accepted[answer["data"]["jobid"]] = f"upload {name}:{version}"
        return str(answer["data"]["jobid"])

    async def final(self, jobid: str) -> dict[str, Any] | None:
        answer = await self.call(f"status {jobid}", "GET", "/task/status", params={"jobid": jobid})
        info: dict[str, Any] = answer["info"][0]
        self.seen[jobid] = info
        return info if info.get("state") in (3, 4) else None


def _item_codes(answer: dict[str, Any]) -> list[Any]:
    data = answer.get("data")
    return [item.get("code") for item in data if isinstance(item, dict)] if isinstance(data, list) else []


@dataclass
class SampleFeed:
    """Publishes one batch of samples every `every` seconds, each until JetStream acknowledged it
    (the same message id on a retry, as the agent does); `sent` counts acknowledged samples."""

    bus: Bus
    node: str
    image: str
    every: float = 0.1
    per_batch: int = 5
    sent: set[str] = field(default_factory=set)
    retries: int = 0
    across_stores: int = 0  # stored by both metering replicas (see the test)

    async def run(self, stop: asyncio.Event) -> None:
        seq = 0
        while not stop.is_set():
            now = time.time()
            batch = SampleBatch(
                batch_id=f"{self.node}-b{seq}",
                node_uuid=self.node,
                samples=[
                    Sample(
                        sample_id=f"{self.node}-{seq}-{i}",
                        node_uuid=self.node,
                        deploymentname="load",
                        image=self.image,
                        version="1",
                        ts=now,
                        interval_s=1,
                        tx_bytes=1000,
                    )
                    for i in range(self.per_batch)
                ],
            )
            while True:
                try:
                    await self.bus.publish(subjects.samples(self.node), batch, msg_id=batch.batch_id)
                    break
                except Exception:  # a timeout or no responders during a failover: again
                    self.retries += 1
                    await asyncio.sleep(0.3)
            self.sent.update(s.sample_id for s in batch.samples)
            seq += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)
