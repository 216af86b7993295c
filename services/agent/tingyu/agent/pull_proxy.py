"""Capped pulls (docs/remote.md#bandwidth-cap): Docker's pull API has no rate limit, so while a
capped pull runs the agent serves the image's registry on 127.0.0.1 and holds what it sends to
Docker to one token bucket per machine.

Docker treats 127.0.0.0/8 registries as insecure (plain HTTP, no configuration). It pulls
`127.0.0.1:<port>/<repository>:<tag>`; the proxy forwards `/v2/` GETs and HEADs upstream with
Docker's own Authorization header and answers as the registry did, WWW-Authenticate included: the
token realm is an absolute URL, so Docker fetches its tokens from the registry's token service as
usual. Blob GETs that the registry redirects (to object storage) are followed here, so those bytes
are capped too; a redirect to another host does not carry the Authorization header.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from tingyu.agent.throttle import TokenBucket
from tingyu.common.settings import PlatformSettings

log = logging.getLogger(__name__)

DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "https://registry-1.docker.io"
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
_MAX_HEAD = 64 * 1024  # a request head larger than this is not Docker's
_IDLE_S = 120.0  # a kept-alive connection with no request this long is closed
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Reference:
    """A tagged image reference in parts: `host` as written (`docker.io` when none), the repository
    `path` on that registry, the reference without its tag, and the tag."""

    host: str
    path: str
    repository: str  # the reference without its tag, as Docker tags it
    tag: str

    def through(self, port: int) -> str:
        """The same image as Docker pulls it through the proxy on `port`."""
        return f"127.0.0.1:{port}/{self.path}:{self.tag}"


def split_reference(image_ref: str) -> Reference | None:
    """`image_ref` in parts; None for a reference by digest (a local tag cannot carry the digest, so
    such pulls are not capped)."""
    if "@" in image_ref or not image_ref:
        return None
    repository, tag = image_ref, "latest"
    if ":" in image_ref.rsplit("/", 1)[-1]:
        repository, tag = image_ref.rsplit(":", 1)
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost") and first != DOCKER_HUB:
        return Reference(first, rest, repository, tag)
    if first == DOCKER_HUB and rest:
        return Reference(DOCKER_HUB, rest if "/" in rest else f"library/{rest}", repository, tag)
    path = repository if "/" in repository else f"library/{repository}"
    return Reference(DOCKER_HUB, path, repository, tag)


class RegistryProxy:
    """One upstream registry served on 127.0.0.1 at a free port; every body it sends waits on each
    of `buckets` (the machine's, a job's)."""

    def __init__(
        self, upstream: str, buckets: tuple[TokenBucket, ...], verify: ssl.SSLContext | str | bool = True
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.buckets = buckets
        self.client = httpx.AsyncClient(verify=verify, timeout=httpx.Timeout(60.0, connect=15.0))
        self.port = 0
        self.failure = ""  # why the registry could not be reached, the last time it could not
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_MAX_HEAD)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("pull proxy for %s on 127.0.0.1:%d", self.upstream, self.port)
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            await self._server.wait_closed()
        await self.client.aclose()
        log.info("pull proxy for %s closed", self.upstream)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while await self._exchange(reader, writer):
                pass
        except httpx.HTTPError as exc:  # the registry went away mid-body: Docker sees it cut and retries
            log.warning("pull proxy: %s: %s", self.upstream, exc)
            self.failure = f"{self.upstream}: {str(exc) or type(exc).__name__}"
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request and its answer; False when the connection is to be closed."""
        first = await asyncio.wait_for(reader.read(1), _IDLE_S)
        if not first:
            return False
        if not first.isalpha():  # a TLS handshake: Docker tries HTTPS first and falls back on this
            writer.write(b"HTTP/1.0 400 Bad Request\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return False
        head = first + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _IDLE_S)
        method, path, headers = _parse_head(head)
        if method not in ("GET", "HEAD"):
            await _answer(writer, 405, b"only pulls go through this proxy\n")
            return False
        if not (path == "/v2" or path.startswith("/v2/")):
            await _answer(writer, 404, b"not a registry API path\n")
            return True
        blob = method == "GET" and "/blobs/" in path
        request = self.client.build_request(method, self.upstream + path, headers=headers)
        try:
            response = await self.client.send(request, stream=True, follow_redirects=blob)
        except httpx.HTTPError as exc:
            log.warning("pull proxy: %s %s: %s", method, self.upstream + path, exc)
            self.failure = f"{self.upstream}: {str(exc) or type(exc).__name__}"
            await _answer(writer, 502, f"the registry {self.upstream} cannot be reached: {exc}\n".encode())
            return False
        try:
            return await self._relay(method, response, writer)
        finally:
            await response.aclose()

    async def _relay(self, method: str, response: httpx.Response, writer: asyncio.StreamWriter) -> bool:
        sized = "content-length" in response.headers
        bodyless = method == "HEAD" or response.status_code in (204, 304) or response.status_code < 200
        lines = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
        lines += [f"{k}: {v}" for k, v in response.headers.multi_items() if k.lower() not in _HOP_BY_HOP]
        if not sized and not bodyless:
            lines.append("Transfer-Encoding: chunked")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if bodyless:
            await writer.drain()
            return True
        async for chunk in response.aiter_raw(_CHUNK):
            for bucket in self.buckets:
                await bucket.take(len(chunk))
            writer.write(chunk if sized else b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        if not sized:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        return True


def _parse_head(head: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, path, _ = [*request_line.split(" ", 2), "", ""][:3]
    headers = []
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() not in _HOP_BY_HOP:
            headers.append((name.strip(), value.strip()))
    return method, path, headers


async def _answer(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    reasons = {404: "Not Found", 405: "Method Not Allowed", 502: "Bad Gateway"}
    writer.write(
        f"HTTP/1.1 {status} {reasons[status]}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()


@dataclass(frozen=True)
class InsecureRegistries:
    """The registries Docker reaches without verified TLS (`insecure-registries`): by name and by
    address; loopback always."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def of(cls, docker_info: dict[str, Any]) -> InsecureRegistries:
        """As dockerd's `info` lists them."""
        config = docker_info.get("RegistryConfig") or {}
        indexes = config.get("IndexConfigs") or {}
        networks = []
        for cidr in config.get("InsecureRegistryCIDRs") or []:
            with contextlib.suppress(ValueError):
                networks.append(ipaddress.ip_network(cidr, strict=False))
        hosts = frozenset(name for name, index in indexes.items() if not index.get("Secure", True))
        return cls(hosts, tuple(networks))

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str):
            return False
        if host in self.hosts:
            return True
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(name.strip("[]"))
            return address.is_loopback or any(address in network for network in self.networks)
        return name == "localhost"


class PullProxies:
    """The machine's capped pulls: one proxy per upstream registry while pulls of it are in flight,
    all of them drawing on one token bucket of `rate` bytes per second (0: no machine cap); a pull
    with a cap of its own (a pre-pull job's `ratelimit`) gets a proxy of its own with a bucket of
    that rate besides."""

    def __init__(
        self,
        rate: int,
        *,
        own_registry: str = "",
        own_registry_url: str = "",
        insecure: InsecureRegistries | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        self.bucket = TokenBucket(rate) if rate > 0 else None
        self.own_registry = own_registry
        self.own_registry_url = own_registry_url
        self.insecure = insecure  # None until the runtime has asked Docker (at the first capped pull)
        self.verify = verify
        self._proxies: dict[str, tuple[RegistryProxy, int]] = {}  # host -> proxy, pulls using it
        self._lock = asyncio.Lock()

    @property
    def capped(self) -> bool:
        """Every pull is capped, not only those of a job with a cap of its own."""
        return self.bucket is not None

    def upstreams(self, host: str) -> list[str]:
        """Where the registry `host` may answer, in the order Docker tries: the platform's registry at
        its configured URL, Docker Hub at its API host, a registry Docker treats as insecure over
        HTTPS (unverified) and then HTTP, any other over HTTPS."""
        if host == DOCKER_HUB:
            return [_DOCKER_HUB_API]
        if self.own_registry_url and host == self.own_registry:
            return [self.own_registry_url]
        if host in (self.insecure or InsecureRegistries()):
            return [f"https://{host}", f"http://{host}"]
        return [f"https://{host}"]

    async def _proxy_of(self, host: str, rate: int) -> RegistryProxy:
        buckets = tuple(b for b in (self.bucket, TokenBucket(rate) if rate > 0 else None) if b is not None)
        candidates = self.upstreams(host)
        if len(candidates) == 1:
            return RegistryProxy(candidates[0], buckets, self.verify)
        secure = await _answers_over_tls(candidates[0])
        return RegistryProxy(candidates[0] if secure else candidates[1], buckets, verify=False)

    @contextlib.asynccontextmanager
    async def route(self, reference: Reference, rate: int = 0) -> AsyncIterator[RegistryProxy]:
        """A proxy for `reference`'s registry, open while the block runs; with `rate`, one of this
        pull's own that holds it to that many bytes per second as well."""
        if rate > 0:
            proxy = await self._proxy_of(reference.host, rate)
            await proxy.start()
            try:
                yield proxy
            finally:
                await proxy.close()
            return
        async with self._lock:
            shared, users = self._proxies.get(reference.host, (None, 0))
            if shared is None:
                shared = await self._proxy_of(reference.host, 0)
                await shared.start()
            self._proxies[reference.host] = (shared, users + 1)
        try:
            yield shared
        finally:
            async with self._lock:
                shared, users = self._proxies[reference.host]
                if users > 1:
                    self._proxies[reference.host] = (shared, users - 1)
                else:
                    del self._proxies[reference.host]
                    await shared.close()


async def _answers_over_tls(url: str) -> bool:
    """Whether a registry Docker treats as insecure speaks HTTPS at all (Docker tries it first)."""
    async with httpx.AsyncClient(verify=False, timeout=5.0) as client:
        try:
            await client.get(f"{url}/v2/")
        except httpx.HTTPError:
            return False
    return True


def pull_proxies(platform: PlatformSettings, rate: int) -> PullProxies:
    """The machine's capped pulls at `rate` bytes per second (0: only pulls with a cap of their
    own), trusting HTTPS registries as the platform's settings say."""
    verify: ssl.SSLContext | bool = not platform.registry_insecure
    if platform.registry_ca and not platform.registry_insecure:
        verify = ssl.create_default_context(cafile=platform.registry_ca)
    return PullProxies(
        rate, own_registry=platform.registry, own_registry_url=platform.registry_url, verify=verify
    )
