"""`tingyu dead`: a parked message is listed with its reason, replayed on its subject, removed."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.bus.consumers import dead_letter
from tingyu.common.settings import PlatformSettings


def tingyu(nats_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TINGYU_NATS_URL": nats_url}
    return subprocess.run(
        [sys.executable, "-m", "tingyu.cli.main", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_dead_letter_is_listed_replayed_and_gone(nats_url: str) -> None:
    token = secrets.token_hex(4)
    original = f"ty.samples.node{token}"

    async def park() -> bytes:
        bus = await Bus.connect(PlatformSettings(nats_url=nats_url), "test")
        try:
            await dead_letter(
                bus,
                subjects.METERING_SAMPLES,
                subject=original,
                data=b'{"payload": "' + token.encode() + b'"}',
                headers={"Nats-Msg-Id": "m1", "X-Trace": token},
                reason=f"broken sample {token}",
            )
            sub = await bus.nc.subscribe(original)  # core NATS sees the replay's publish too
            listing = tingyu(nats_url, "dead", "ls", "--consumer", subjects.METERING_SAMPLES.durable)
            assert listing.returncode == 0, listing.stderr
            line = next(line for line in listing.stdout.splitlines() if token in line)
            assert f"broken sample {token}" in line
            letter_id = line.split()[0]
            replay = await asyncio.to_thread(tingyu, nats_url, "dead", "replay", letter_id)
            assert replay.returncode == 0, replay.stderr
            replayed = await sub.next_msg(timeout=10)
            assert replayed.headers == {"X-Trace": token}
            gone = tingyu(nats_url, "dead", "show", letter_id)
            assert gone.returncode == 1
            return replayed.data
        finally:
            await bus.close()

    assert asyncio.run(park()) == b'{"payload": "' + token.encode() + b'"}'
