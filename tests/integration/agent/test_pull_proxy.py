"""The pull proxy on its own against a real docker-registry: what it forwards, what it refuses, and
that it throttles what it sends (docs/remote.md#bandwidth-cap)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from tests.integration.imager.test_registry_auth import registry_serving
from tingyu.agent.pull_proxy import RegistryProxy
from tingyu.agent.throttle import TokenBucket

BLOB = os.urandom(512 * 1024)
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
RATE = 256 * 1024


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A docker-registry holding BLOB in `tytest/proxy`."""
    with registry_serving(tmp_path_factory.mktemp("registry-proxy")) as url:
        upload = httpx.post(f"{url}/v2/tytest/proxy/blobs/uploads/")
        upload.raise_for_status()
        location = upload.headers["location"]
        separator = "&" if "?" in location else "?"
        done = httpx.put(f"{location}{separator}digest={DIGEST}", content=BLOB)
        assert done.status_code == 201, done.text
        yield url


@pytest_asyncio.fixture
async def proxy(registry: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a proxy in front of the registry, capped at RATE."""
    served = RegistryProxy(registry, (TokenBucket(RATE, burst=16 * 1024),))
    port = await served.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client
    await served.close()


async def test_a_blob_comes_through_whole_at_the_capped_pace(proxy: httpx.AsyncClient) -> None:
    started = time.monotonic()
    answer = await proxy.get(f"/v2/tytest/proxy/blobs/{DIGEST}")
    took = time.monotonic() - started
    assert answer.status_code == 200
    assert answer.content == BLOB
    assert took >= (len(BLOB) - 16 * 1024) / RATE * 0.9, f"{len(BLOB)} bytes at {RATE} B/s took {took:.2f}s"


async def test_heads_and_the_registry_answers_pass_as_they_are(proxy: httpx.AsyncClient) -> None:
    head = await proxy.head(f"/v2/tytest/proxy/blobs/{DIGEST}")
    assert (head.status_code, head.headers["content-length"]) == (200, str(len(BLOB)))
    assert head.headers["docker-content-digest"] == DIGEST
    missing = await proxy.get("/v2/tytest/proxy/manifests/nosuchtag")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    version = await proxy.get("/v2/")
    assert version.status_code == 200
    assert version.headers["docker-distribution-api-version"] == "registry/2.0"


async def test_only_pulls_of_the_registry_api_go_through(proxy: httpx.AsyncClient) -> None:
    assert (await proxy.post("/v2/tytest/proxy/blobs/uploads/")).status_code == 405
    assert (await proxy.get("/metrics")).status_code == 404


async def test_a_tls_handshake_is_answered_in_plain_http_at_once(proxy: httpx.AsyncClient) -> None:
    """Docker tries HTTPS first for a 127.0.0.0/8 registry and falls back when the answer is HTTP."""
    port = proxy.base_url.port
    context = ssl.create_default_context()
    with pytest.raises(ssl.SSLError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=context), timeout=5)


async def test_an_unreachable_registry_is_a_502_with_the_reason() -> None:
    served = RegistryProxy("http://127.0.0.1:9", (TokenBucket(RATE),))
    port = await served.start()
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{port}/v2/")
        assert answer.status_code == 502
        assert "http://127.0.0.1:9" in answer.text
        assert served.failure.startswith("http://127.0.0.1:9: ")
    finally:
        await served.close()
