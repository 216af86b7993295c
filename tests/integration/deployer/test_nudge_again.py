"""A nudge is core NATS (at most once): a machine that has not answered a dispatched job is nudged
again at doubling intervals, with the revision the job wrote, until a report moves the job on.
Against the real deployer (`TINGYU_DEPLOYER_NUDGE_AGAIN_S=1` in the test platform)."""

from __future__ import annotations

import asyncio
import time

import httpx
from nats.aio.msg import Msg

from tests.integration.api.test_containers_api import item, job_state, ready_peer, wait_job
from tests.support import eventually, unique
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.models.containers import DesiredNudge, PodPhase


async def test_an_unanswered_machine_is_nudged_again_until_it_reports(
    api: httpx.AsyncClient, bus: Bus
) -> None:
    peer = await ready_peer(api, bus)  # heartbeats, and reports only when told to
    heard: list[tuple[float, DesiredNudge]] = []

    async def on_nudge(msg: Msg) -> None:
        heard.append((time.monotonic(), DesiredNudge.from_bytes(msg.data)))

    nudges = await bus.nc.subscribe(subjects.agent_nudge(peer.uuid), cb=on_nudge)
    try:
        name = unique()
        body = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()
        jobid = body["data"][0]["jobid"]

        async def four() -> bool:
            return len(heard) >= 4

        await eventually(four, timeout=30)
        _, revision = await DesiredStore(bus).entry(peer.uuid, name)
        assert {(n.name, n.revision) for _, n in heard} == {(name, revision)}
        # At dispatch, then 1, 2 and 4 s after it: never sooner (a slow box only makes them later).
        offsets = [at - heard[0][0] for at, _ in heard[:4]]
        assert [offset >= 0.9 * due for offset, due in zip(offsets, (0, 1, 2, 4), strict=True)] == [True] * 4
        assert (await job_state(api, jobid))["state"] == 1  # still dispatched: nobody answered

        await peer.report({name: PodPhase.RUNNING})
        await wait_job(api, jobid, 3)
        after = len(heard)
        await asyncio.sleep(5)  # two more looks would have come by now
        assert len(heard) == after
    finally:
        await nudges.unsubscribe()
        await peer.stop()
