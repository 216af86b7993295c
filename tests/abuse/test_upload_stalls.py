"""Stalled and excess uploads: a bounded number in flight per API process, one more refused at once
with TY0010, a stalled one cut by the body idle timeout, and stalled ones never block the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import httpx

from tests.abuse.conftest import assert_alive
from tests.e2e.test_images import finished, saved_tar, upload
from tests.integration.conftest import nats_only
from tests.support import ADMIN_TOKEN, bearer, eventually, unique
from tingyu.api.config import ApiSettings
from tingyu.api.main import create_app
from tingyu.cli.launcher import Platform
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.settings import PlatformSettings

BUSY = "TY0010"


async def stalled_upload(
    platform: Platform, api: httpx.AsyncClient
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An upload whose client sends the head and a little of a 10 MB body, then nothing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", platform.config.api_port)
    extra = "".join(f"{k}: {v}\r\n" for k, v in api.headers.items() if k.lower() == "authorization")
    writer.write(
        (
            f"POST /tingyu/image/uploadImage?image_name=tytest/{unique('stall')}&version=1 HTTP/1.1\r\n"
            f"Host: api\r\nContent-Type: application/x-tar\r\nContent-Length: 10000000\r\n{extra}\r\n"
        ).encode()
        + b"\0" * 100
    )
    await writer.drain()
    return reader, writer


async def stored_chunks(bus: Bus) -> int:
    """Messages in the uploads' object store: an upload in flight has stored its first bytes."""
    return int((await bus.js.stream_info(subjects.UPLOADS.stream)).state.messages)


async def refused_busy(api: httpx.AsyncClient) -> httpx.Response | None:
    """An upload answered TY0010 (the API is full), or None when it was admitted."""
    params = {"image_name": f"tytest/{unique('busy')}", "version": "1"}
    headers = {"Content-Type": "application/x-tar"}
    answer = await api.post("/image/uploadImage", params=params, content=b"x" * 10, headers=headers)
    return answer if answer.json().get("code") == BUSY else None


async def test_six_stalled_uploads_do_not_block_another_and_one_over_the_cap_is_refused_at_once(
    *,
    api: httpx.AsyncClient,
    platform: Platform,
    node_uuid: str,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    bus: Bus,
) -> None:
    tar = saved_tar(docker_client, tmp_path, unique("ok"))
    cap = ApiSettings().max_uploads  # the platform's API runs with the default
    before = await stored_chunks(bus)
    stalled = [await stalled_upload(platform, api) for _ in range(cap)]
    try:
        # Each stalled upload is taken in (its first bytes are stored as a chunk), so every slot is
        # taken: one more is answered at once, never queued.
        async def all_taken_in() -> bool:
            return await stored_chunks(bus) >= before + cap

        await eventually(all_taken_in, timeout=20)
        answer = await refused_busy(api)
        assert answer is not None
        assert answer.status_code == 503
        assert "TINGYU_API_MAX_UPLOADS" in answer.json()["detail"]
        # Six stay stalled (each holding a reader thread); with two slots free, a real upload goes through.
        for _, writer in stalled[6:]:
            writer.close()
        del stalled[6:]
        name = f"tytest/{unique('img')}"

        async def admitted() -> dict[str, object] | None:
            body: dict[str, object] = await asyncio.wait_for(upload(api, tar, name, "1"), 25)
            return None if body.get("code") == BUSY else body  # a closed slot may take a moment to free

        body = await eventually(admitted, timeout=30)
        assert body["code"] == 200, body
        job = await finished(api, body["data"]["jobid"])  # type: ignore[index]
        assert job["state"] == 3, job
    finally:
        for _, writer in stalled:
            writer.close()
    await assert_alive(api, node_uuid)


async def test_a_stalled_upload_is_cut_by_the_idle_timeout_and_frees_its_slot(tmp_path: Path) -> None:
    nats = nats_only(tmp_path)
    settings = ApiSettings(
        platform=PlatformSettings(nats_url=nats.config.nats_url),
        max_uploads=2,
        body_idle_timeout_s=2.0,
        admin_token=ADMIN_TOKEN,
    )
    app = create_app(settings)
    never = asyncio.Event()
    reading = [asyncio.Event(), asyncio.Event()]

    async def stalling(admitted: asyncio.Event) -> AsyncIterator[bytes]:
        yield b"\0" * 100
        admitted.set()  # the API asks for more: it has taken this upload in
        await never.wait()

    params = {"image_name": "tytest/stall", "version": "1"}
    headers = {"Content-Type": "application/x-tar"}
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://api/tingyu",
                timeout=30,
                headers=bearer(),
            ) as api,
        ):
            first = await api.post("/image/uploadImage", params=params, content=b"x" * 10, headers=headers)
            assert first.json()["tycode"] == "TY0023"  # admitted and judged: no tar
            stalls = [
                asyncio.create_task(
                    api.post("/image/uploadImage", params=params, content=stalling(event), headers=headers)
                )
                for event in reading
            ]
            for event in reading:
                await asyncio.wait_for(event.wait(), 10)
            busy = await refused_busy(api)
            assert busy is not None
            assert busy.status_code == 503
            for task in stalls:
                cut = await asyncio.wait_for(task, 10)
                assert cut.status_code == 408
                assert cut.json()["code"] == "TY0007"
            # Both slots are free again.
            again = await api.post("/image/uploadImage", params=params, content=b"x" * 10, headers=headers)
            assert again.json()["tycode"] == "TY0023", again.json()
    finally:
        never.set()
        nats.stop()
