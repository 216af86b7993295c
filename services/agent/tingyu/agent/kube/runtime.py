"""The Kubernetes API behind the Runtime protocol, one `KubeRuntime` per Node.

The official client blocks, so every call runs in a thread; the API's own refusal text (e.g.
`deployments.apps "web" not found`) becomes the RuntimeFailure message, as Docker's does."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import shlex
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream as k8s_stream

from tingyu.agent.kube import objects
from tingyu.agent.runtime import (
    LABEL_NODE,
    CreateRequest,
    FileTooLarge,
    NameTaken,
    RuntimeContainer,
    RuntimeFailure,
    RuntimeFile,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def explain(exc: ApiException) -> str:
    """The API's message (`deployments.apps "x" not found`), or its status line."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or f"{exc.status} {exc.reason}")


async def call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """A blocking client call in a thread; an API refusal raises RuntimeFailure with its text."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except ApiException as exc:
        raise RuntimeFailure(explain(exc)) from exc


class KubeCluster:
    """The API clients and the namespace shared by every Node's runtime, and one watch of
    Tingyu's Pods and Deployments that nudges the machine an event belongs to."""

    def __init__(
        self, api: k8s.ApiClient, namespace: str, tolerated: list[str], timeout_s: float = 30.0
    ) -> None:
        self.api = api
        self.core = k8s.CoreV1Api(api)
        self.apps = k8s.AppsV1Api(api)
        self.namespace = namespace
        self.tolerated = tolerated
        self.timeout_s = timeout_s
        self.pull_secret = ""  # named by every Deployment once `ensure_pull_secret` made it
        self.listeners: dict[str, Callable[[], None]] = {}

    async def ensure_namespace(self) -> None:
        try:
            await asyncio.to_thread(self.core.read_namespace, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise RuntimeFailure(explain(exc)) from exc
            body = {"metadata": {"name": self.namespace, "labels": {objects.MANAGED_BY: objects.MANAGER}}}
            with contextlib.suppress(ApiException):  # another process made it first
                await asyncio.to_thread(self.core.create_namespace, body)  # type: ignore[arg-type]

    async def ensure_pull_secret(self, registry: str, user: str, password: str) -> None:
        """The image pull Secret for the platform's registry, made or brought up to date (a changed
        secret is written over), and named by every Deployment from now on."""
        body = objects.pull_secret(registry, user, password)
        try:
            await asyncio.to_thread(self.core.create_namespaced_secret, self.namespace, body)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 409:
                raise RuntimeFailure(explain(exc)) from exc
            await call(self.core.replace_namespaced_secret, objects.PULL_SECRET, self.namespace, body)  # type: ignore[arg-type]
        self.pull_secret = objects.PULL_SECRET

    async def nodes(self, label_selector: str = "") -> list[Any]:
        found = await call(
            self.core.list_node, label_selector=label_selector, _request_timeout=self.timeout_s
        )
        return list(found.items)

    def runtime(self, node_uuid: str, hostname: str) -> KubeRuntime:
        return KubeRuntime(self, node_uuid, hostname)

    async def follow(self, stop: asyncio.Event) -> None:
        """Watch Tingyu's Pods and Deployments until `stop`; each event nudges its machine."""
        loop = asyncio.get_running_loop()
        closed = threading.Event()
        watchers: list[k8s_watch.Watch] = []

        def run(list_fn: Callable[..., Any]) -> None:
            while not closed.is_set():
                watcher = k8s_watch.Watch()
                watchers.append(watcher)
                try:
                    for event in watcher.stream(
                        list_fn, self.namespace, label_selector=objects.selector(), timeout_seconds=60
                    ):
                        node = _node_of(event["object"])
                        notify = self.listeners.get(node)
                        if notify is not None:
                            loop.call_soon_threadsafe(notify)
                except Exception as exc:
                    if not closed.is_set():
                        log.warning("kubernetes watch interrupted (%s); watching again", exc)
                        closed.wait(2.0)

        threads = [
            threading.Thread(target=run, args=(fn,), name=f"kube-watch-{i}", daemon=True)
            for i, fn in enumerate((self.core.list_namespaced_pod, self.apps.list_namespaced_deployment))
        ]
        for thread in threads:
            thread.start()
        try:
            await stop.wait()
        finally:
            closed.set()
            for watcher in watchers:
                watcher.stop()


class KubeRuntime:
    """One Node's containers as Deployments in the cluster's namespace."""

    def __init__(self, cluster: KubeCluster, node_uuid: str, hostname: str) -> None:
        self.cluster = cluster
        self.node_uuid = node_uuid
        self.hostname = hostname

    @property
    def _ns(self) -> str:
        return self.cluster.namespace

    async def list_node(self, node_uuid: str) -> list[RuntimeContainer]:
        selector = objects.selector(node_uuid)
        deployments = await call(
            self.cluster.apps.list_namespaced_deployment, self._ns, label_selector=selector
        )
        pods = await call(self.cluster.core.list_namespaced_pod, self._ns, label_selector=selector)
        by_name: dict[str, list[Any]] = {}
        for pod in pods.items:
            by_name.setdefault(_label(pod, objects.DEPLOYMENT), []).append(pod)
        return [objects.to_container(d, by_name.get(_name(d), [])) for d in deployments.items]

    async def find(self, node_uuid: str, name: str) -> RuntimeContainer | None:
        found = await self.inspect(name)  # a Deployment is named after its deployment
        return found if found is not None and found.labels.get(LABEL_NODE) == node_uuid else None

    async def has_image(self, image_ref: str) -> bool:
        """The kubelet pulls when the Pod starts; a failed pull shows as the Pod's reason."""
        return True

    async def pull(self, image_ref: str, rate: int = 0) -> None:
        return None

    async def create(self, request: CreateRequest) -> RuntimeContainer:
        body = objects.manifest(request, self.hostname, self.cluster.tolerated, self.cluster.pull_secret)
        try:
            await call(self.cluster.apps.create_namespaced_deployment, self._ns, body)  # type: ignore[arg-type]
        except RuntimeFailure as exc:
            if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 409:
                raise NameTaken(str(exc)) from exc
            raise
        created = await self.inspect(request.name)
        if created is None:
            raise RuntimeFailure(f"deployment {request.name} vanished right after it was created")
        return created

    async def inspect(self, container_id: str) -> RuntimeContainer | None:
        try:
            deployment = await asyncio.to_thread(
                self.cluster.apps.read_namespaced_deployment, container_id, self._ns
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise RuntimeFailure(explain(exc)) from exc
        selector = f"{objects.selector(self.node_uuid)},{objects.DEPLOYMENT}={container_id}"
        pods = await call(self.cluster.core.list_namespaced_pod, self._ns, label_selector=selector)
        return objects.to_container(deployment, list(pods.items))

    async def _patch(self, name: str, body: dict[str, Any]) -> None:
        await call(self.cluster.apps.patch_namespaced_deployment, name, self._ns, body)

    async def start(self, container_id: str) -> None:
        await self._patch(container_id, {"spec": {"replicas": 1}})

    async def stop(self, container_id: str) -> None:
        await self._patch(container_id, {"spec": {"replicas": 0}})

    async def replace(self, container_id: str, request: CreateRequest) -> RuntimeContainer:
        """An update patches the Deployment's template (and Tingyu's annotations): the Deployment
        stays, its replica count stays, and Kubernetes rolls its Pod over to the new template."""
        body = objects.manifest(request, self.hostname, self.cluster.tolerated, self.cluster.pull_secret)
        patch = {
            "metadata": {"annotations": body["metadata"]["annotations"]},
            "spec": {"template": body["spec"]["template"]},
        }
        try:
            await asyncio.to_thread(
                self.cluster.apps.patch_namespaced_deployment,
                container_id,
                self._ns,
                patch,
                _content_type="application/merge-patch+json",  # lists (env, volumes) replaced whole
            )
        except ApiException as exc:
            raise RuntimeFailure(explain(exc)) from exc
        replaced = await self.inspect(container_id)
        if replaced is None:
            raise RuntimeFailure(f"deployment {container_id} vanished while it was updated")
        return replaced

    async def settle(self, container_id: str) -> None:
        """A Pod that crashes shows in its status (CrashLoopBackOff) when the watch reports it."""

    async def restart(self, container_id: str) -> None:
        """`kubectl rollout restart`: a new template annotation makes the Deployment replace its Pod."""
        now = datetime.now(UTC).isoformat()
        await self._patch(
            container_id, {"spec": {"template": {"metadata": {"annotations": {objects.RESTARTED_AT: now}}}}}
        )

    async def remove(self, container_id: str) -> None:
        try:
            await asyncio.to_thread(
                self.cluster.apps.delete_namespaced_deployment,
                container_id,
                self._ns,
                propagation_policy="Background",
            )
        except ApiException as exc:
            if exc.status != 404:
                raise RuntimeFailure(explain(exc)) from exc

    async def watch(self, node_uuid: str, notify: Callable[[], None], stop: asyncio.Event) -> None:
        """Events come from the cluster's one watch; this machine only listens to its own."""
        self.cluster.listeners[node_uuid] = notify
        try:
            await stop.wait()
        finally:
            self.cluster.listeners.pop(node_uuid, None)

    async def open_file(self, container_id: str, path: str, limit: int) -> RuntimeFile:
        """The file through the exec API (`stat`, then `cat`) in the Deployment's running Pod."""
        pod = await self._running_pod(container_id)
        quoted = shlex.quote(path)
        refuse = f"{{ echo 'not a regular file: {path}' >&2; exit 1; }}"
        probe = f"test -f {quoted} || {refuse}; stat -L -c %s {quoted}"
        size_text = await self._exec(pod, probe)
        try:
            size = int(size_text.strip().decode())
        except ValueError as exc:
            raise RuntimeFailure(size_text.decode(errors="replace").strip() or f"cannot read {path}") from exc
        if size > limit:
            raise FileTooLarge(f"{path} is {size} bytes, over the limit of {limit} bytes")
        data = await self._exec(pod, f"head -c {limit} {quoted}")
        reader: Any = io.BytesIO(data)  # a RawIOBase in all but name
        return RuntimeFile(name=path.rsplit("/", 1)[-1], size=size, reader=reader)

    async def _running_pod(self, container_id: str) -> str:
        selector = f"{objects.selector(self.node_uuid)},{objects.DEPLOYMENT}={container_id}"
        pods = await call(self.cluster.core.list_namespaced_pod, self._ns, label_selector=selector)
        running = [p for p in pods.items if p.status and p.status.phase == "Running"]
        if not running:
            raise RuntimeFailure(f"deployment {container_id} has no running pod")
        return _name(running[0])

    async def _exec(self, pod: str, script: str) -> bytes:
        def run() -> bytes:
            response = k8s_stream(
                self.cluster.core.connect_get_namespaced_pod_exec,
                pod,
                self._ns,
                container=objects.CONTAINER,
                command=["sh", "-c", script],
                stderr=True,
                stdout=True,
                stdin=False,
                tty=False,
                _preload_content=False,
            )
            out, err = io.BytesIO(), io.BytesIO()
            while response.is_open():
                response.update(timeout=1)
                if response.peek_stdout():
                    out.write(response.read_stdout().encode("latin-1", errors="replace"))
                if response.peek_stderr():
                    err.write(response.read_stderr().encode())
            if response.returncode:
                raise RuntimeFailure(err.getvalue().decode(errors="replace").strip() or "exec failed")
            return out.getvalue()

        return await call(run)


def _label(obj: Any, key: str) -> str:
    return str((obj.metadata.labels or {}).get(key, ""))


def _name(obj: Any) -> str:
    return str(obj.metadata.name)


def _node_of(obj: Any) -> str:
    return _label(obj, LABEL_NODE)
