"""Abuse of metering: a sample with `ts: NaN` in a batch of good ones must not stop billing."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import httpx
import pytest

from tests.integration.metering.test_metering import FIVE_MIN, _bandwidth, expected
from tests.support import eventually, unique
from tingyu.cli.launcher import Platform
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.metering import Sample, SampleBatch

pytestmark = pytest.mark.e2e


def sample(node: str, image: str, ts: float, tx: int) -> Sample:
    return Sample(
        sample_id=unique("s"),
        node_uuid=node,
        deploymentname="web",
        image=image,
        version="v1",
        ts=ts,
        interval_s=30.0,
        tx_bytes=tx,
        rx_bytes=tx // 2,
        cpu_cores=0.5,
        memory_mib=64.0,
    )


async def test_a_nan_sample_is_dropped_and_the_rest_of_its_batch_is_stored(
    api: httpx.AsyncClient, bus: Bus, platform: Platform
) -> None:
    node, image = unique("node"), unique("img")
    start = (int(time.time()) - 3 * 3600) // FIVE_MIN * FIVE_MIN
    good = [sample(node, image, start + 30 * (i + 1), 3000 * (i + 1)) for i in range(3)]
    poisoned = json.loads(SampleBatch(batch_id=unique("b"), node_uuid=node, samples=good[:2]).to_bytes())
    bad = {**poisoned["samples"][0], "sample_id": unique("nan"), "ts": "NaN-placeholder", "tx_bytes": 10**9}
    poisoned["samples"].insert(1, bad)
    raw = json.dumps(poisoned).replace('"NaN-placeholder"', "NaN").encode()  # what a broken agent sends
    sent = await bus.js.publish(subjects.samples(node), raw, headers={"Nats-Msg-Id": poisoned["batch_id"]})
    later = SampleBatch(batch_id=unique("b"), node_uuid=node, samples=good[2:])
    await bus.publish(subjects.samples(node), later, msg_id=later.batch_id)

    end = start + FIVE_MIN - 1
    want = expected(good, start, end, account=False, image=image)

    async def stored() -> dict[str, Any] | None:
        body = await _bandwidth(api, "getByImage", start, end, image=image)
        got = sum(point["upbps"] for point in body.get("info") or [])
        return body if body["code"] == 200 and math.isclose(got, sum(want["up"]), rel_tol=1e-9) else None

    # The two good samples of the poisoned batch and the later batch are stored, the NaN one is not
    # (its 10**9 bytes would show).
    await eventually(stored, timeout=30)

    async def consumed() -> bool:  # acked: not waiting for a redelivery that would fail again
        info = await bus.js.consumer_info(subjects.SAMPLES.name, subjects.METERING_SAMPLES.durable)
        return (info.ack_floor.stream_seq or 0) >= sent.seq

    # The ack floor passes this message only once every earlier one (other tests' batches on the
    # shared platform) is acked too: on a loaded machine that can take a few ack waits.
    await eventually(consumed, timeout=120)
    log = platform.config.log_file
    assert log is not None
    assert f"dropped 1 of 3 samples of batch {poisoned['batch_id']}" in log.read_text(errors="replace")
