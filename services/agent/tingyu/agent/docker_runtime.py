"""The Docker Engine behind the Runtime protocol; docker-py blocks, so every call runs in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import docker
import requests
from docker import errors as docker_errors

from tingyu.agent import docker_files
from tingyu.agent.pull_proxy import InsecureRegistries, PullProxies, Reference, split_reference
from tingyu.agent.runtime import (
    LABEL_NODE,
    CreateRequest,
    ImageMissing,
    NameTaken,
    RuntimeContainer,
    RuntimeFailure,
    RuntimeFile,
)
from tingyu.common.policy import bind

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Events that can change what a report says without the agent having acted.
_WATCHED_EVENTS = ["die", "destroy", "oom", "kill"]


class DockerRuntime:
    """Containers through docker-py; Docker's own error texts become RuntimeFailure messages."""

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        registry: str = "",
        registry_user: str = "",
        registry_password: str = "",
        pull_timeout_s: float = 600.0,
        stop_timeout_s: float = 10.0,
        start_settle_s: float = 2.0,
        pull_proxies: PullProxies | None = None,
    ) -> None:
        self.client = client
        self.pull_proxies = pull_proxies  # capped pulls go through them
        self._capped_pulls: dict[str, asyncio.Lock] = {}
        self.registry = registry
        self.auth = {"username": registry_user, "password": registry_password} if registry_user else None
        self.pull_timeout_s = pull_timeout_s
        self.stop_timeout_s = int(max(stop_timeout_s, 0))
        self.start_settle_s = start_settle_s

    @classmethod
    def connect(cls, docker_host: str = "", timeout_s: float = 60.0, **options: Any) -> DockerRuntime:
        """A runtime on `docker_host` (empty: DOCKER_HOST or the local socket)."""
        timeout = int(timeout_s)
        client = (
            docker.DockerClient(base_url=docker_host, timeout=timeout)
            if docker_host
            else docker.from_env(timeout=timeout)
        )
        return cls(client, **options)

    def close(self) -> None:
        self.client.close()

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Any docker-py call in a thread, its errors as RuntimeFailure (logs, exec, pulls use it)."""
        return await self._call(fn, *args, **kwargs)

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except docker_errors.APIError as exc:
            raise RuntimeFailure(_explain(exc)) from exc
        except docker_errors.DockerException as exc:
            raise RuntimeFailure(str(exc)) from exc

    # --- the Runtime protocol --------------------------------------------------------------------

    async def list_node(self, node_uuid: str) -> list[RuntimeContainer]:
        summaries = await self._call(
            self.client.api.containers, all=True, filters={"label": f"{LABEL_NODE}={node_uuid}"}
        )
        found = [await self.inspect(summary["Id"]) for summary in summaries]
        return [container for container in found if container is not None]

    async def find(self, node_uuid: str, name: str) -> RuntimeContainer | None:
        found = await self.inspect(name)  # Docker looks a container up by its name too
        return found if found is not None and found.labels.get(LABEL_NODE) == node_uuid else None

    async def has_image(self, image_ref: str) -> bool:
        try:
            await self._call(self.client.api.inspect_image, image_ref)
        except RuntimeFailure as exc:
            if isinstance(exc.__cause__, docker_errors.NotFound):
                return False
            raise
        return True

    async def pull(self, image_ref: str, rate: int = 0) -> None:
        auth = self.auth if self.auth and self._is_ours(image_ref) else None
        capped = self.pull_proxies is not None and (self.pull_proxies.capped or rate > 0)
        reference = split_reference(image_ref) if capped else None
        fetch = self._pull(image_ref, auth) if reference is None else self._capped_pull(reference, auth, rate)
        try:
            await asyncio.wait_for(fetch, timeout=self.pull_timeout_s)
        except TimeoutError:
            raise RuntimeFailure(f"pull did not finish within {self.pull_timeout_s:.0f}s") from None
        if not await self.has_image(image_ref):
            raise RuntimeFailure("pull finished but the image is not there")

    async def create(self, request: CreateRequest) -> RuntimeContainer:
        spec = request.spec
        host_config = self.client.api.create_host_config(
            network_mode="host",
            restart_policy={"Name": "always"},
            binds=[bind(v) for v in spec.volumes],  # the reconciler has judged them by the edge policy
            privileged=False,  # never, and no added capabilities (edge policy)
            nano_cpus=int(spec.limits_cpu * 1e9) or None,
            cpu_shares=int(spec.requests_cpu * 1024) or None,
            mem_limit=spec.limits_memory * 2**20 or None,
            mem_reservation=spec.requests_memory * 2**20 or None,
        )
        try:
            created = await self._call(
                self.client.api.create_container,
                spec.image_ref,
                name=request.name,
                labels=request.labels,
                environment={e.key: e.value for e in spec.env},
                host_config=host_config,
            )
        except RuntimeFailure as exc:
            cause = exc.__cause__
            if isinstance(cause, docker_errors.ImageNotFound):
                raise ImageMissing(str(exc)) from exc
            if isinstance(cause, docker_errors.APIError) and cause.status_code == 409:
                raise NameTaken(str(exc)) from exc
            raise
        # What Docker would answer to an inspect now (the caller starts it and inspects then).
        return RuntimeContainer(
            id=created["Id"],
            name=request.name,
            status="created",
            labels=dict(request.labels),
            image_ref=spec.image_ref,
        )

    async def inspect(self, container_id: str) -> RuntimeContainer | None:
        try:
            attrs = await self._call(self.client.api.inspect_container, container_id)
        except RuntimeFailure as exc:
            if isinstance(exc.__cause__, docker_errors.NotFound):
                return None
            raise
        return _to_container(attrs)

    async def start(self, container_id: str) -> None:
        await self._call(self.client.api.start, container_id)

    async def stop(self, container_id: str) -> None:
        await self._call(self.client.api.stop, container_id, timeout=self.stop_timeout_s)

    async def restart(self, container_id: str) -> None:
        await self._call(self.client.api.restart, container_id, timeout=self.stop_timeout_s)

    async def replace(self, container_id: str, request: CreateRequest) -> RuntimeContainer:
        await self.remove(container_id)
        return await self.create(request)

    async def settle(self, container_id: str) -> None:
        """A container that exits within `start_settle_s` of its start did not start. Without this
        wait a crash right after the start reads Running for a moment (its restart policy starts it
        again), and the job of a change of spec would succeed instead of rolling back."""
        if self.start_settle_s <= 0:
            return
        try:
            exited = await self._call(
                self.client.api.wait, container_id, timeout=self.start_settle_s, condition="not-running"
            )
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            return  # still running after the settle time: started
        code = int(exited.get("StatusCode") or 0)
        raise RuntimeFailure(f"exited with code {code} right after it started")

    async def remove(self, container_id: str) -> None:
        try:
            await self._call(self.client.api.remove_container, container_id, force=True)
        except RuntimeFailure as exc:
            if not isinstance(exc.__cause__, docker_errors.NotFound):
                raise

    async def watch(self, node_uuid: str, notify: Callable[[], None], stop: asyncio.Event) -> None:
        """Follow `docker events` in a thread; reconnects after errors until `stop` is set."""
        loop = asyncio.get_running_loop()
        streams: list[Any] = []
        closed = threading.Event()

        def follow() -> None:
            filters = {"type": "container", "label": f"{LABEL_NODE}={node_uuid}", "event": _WATCHED_EVENTS}
            while not closed.is_set():
                try:
                    stream = self.client.api.events(decode=True, filters=filters)
                    streams.append(stream)
                    if closed.is_set():
                        stream.close()
                        return
                    for _event in stream:
                        loop.call_soon_threadsafe(notify)
                except Exception as exc:
                    if not closed.is_set():
                        log.warning("docker events interrupted (%s); following again", exc)
                        closed.wait(2.0)

        thread = threading.Thread(target=follow, name=f"docker-events-{node_uuid[-6:]}", daemon=True)
        thread.start()
        try:
            await stop.wait()
        finally:
            closed.set()
            for stream in streams:
                with contextlib.suppress(Exception):
                    stream.close()
            await asyncio.to_thread(thread.join, 5.0)

    async def open_file(self, container_id: str, path: str, limit: int) -> RuntimeFile:
        return await self._call(docker_files.open_file, self.client.api, container_id, path, limit)

    async def _pull(self, image_ref: str, auth: dict[str, str] | None) -> None:
        await self._call(self._pull_blocking, image_ref, auth)

    async def _capped_pull(self, reference: Reference, auth: dict[str, str] | None, rate: int) -> None:
        """Pull through the machine's capped proxy, then tag the image as `reference` and drop the
        proxy's name, so that nothing else ever sees it (docs/remote.md#bandwidth-cap)."""
        assert self.pull_proxies is not None
        if self.pull_proxies.insecure is None:  # asked here, not at start: Docker may be down then
            self.pull_proxies.insecure = InsecureRegistries.of(await self._call(self.client.info))
        original = f"{reference.repository}:{reference.tag}"
        # Two pulls of one reference would untag each other's proxy name: one at a time.
        one_at_a_time = self._capped_pulls.setdefault(original, asyncio.Lock())
        async with one_at_a_time, self.pull_proxies.route(reference, rate) as proxy:
            local = reference.through(proxy.port)
            try:
                await self._call(self._pull_blocking, local, auth)
                await self._call(self.client.api.tag, local, reference.repository, reference.tag)
            except RuntimeFailure as exc:
                # Docker names the proxy ("502 Bad Gateway"); the proxy knows what went wrong.
                cause = f" (cannot reach the registry at {proxy.failure})" if proxy.failure else ""
                raise RuntimeFailure(str(exc).replace(local, original) + cause) from exc
            finally:
                with contextlib.suppress(RuntimeFailure):
                    await self._call(self.client.api.remove_image, local, noprune=True)

    def _pull_blocking(self, image_ref: str, auth: dict[str, str] | None) -> None:
        # The pull API answers 200 and then streams its errors: read them out of the progress.
        for progress in self.client.api.pull(image_ref, auth_config=auth, stream=True, decode=True):
            if isinstance(progress, dict) and progress.get("error"):
                raise RuntimeFailure(str(progress["error"]))

    def _is_ours(self, image_ref: str) -> bool:
        return bool(self.registry) and image_ref.startswith(f"{self.registry}/")


def _explain(exc: docker_errors.APIError) -> str:
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc)


def _to_container(attrs: dict[str, Any]) -> RuntimeContainer:
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    return RuntimeContainer(
        id=attrs["Id"],
        name=str(attrs.get("Name", "")).lstrip("/"),
        status=str(state.get("Status", "")),
        labels=dict(config.get("Labels") or {}),
        image_ref=str(config.get("Image", "")),
        exit_code=int(state.get("ExitCode") or 0),
        error=str(state.get("Error") or ""),
        started_at=_parse_time(str(state.get("StartedAt") or "")),
    )


def _parse_time(text: str) -> float | None:
    """Docker's RFC 3339 with nanoseconds -> epoch seconds; None for its zero time."""
    if not text or text.startswith("0001-"):
        return None
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
