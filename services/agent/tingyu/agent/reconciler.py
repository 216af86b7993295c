"""Makes a machine's containers match its desired state; knows nothing of Docker itself.

A pass is idempotent (running it twice changes nothing the second time) and passes are
serialised by a lock. Each deployment is handled on its own: one that fails is reported
Failed with the engine's text and tried again on the next pass, the others go on.
A whole pass lists the machine's containers and looks at every deployment (and removes strays);
a pass about some deployments (`only`) looks their containers up by name and touches no other, so
its cost does not grow with the number of containers on the machine.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass

from tingyu.agent.applied import AppliedRestarts
from tingyu.agent.runtime import (
    LABEL_JOB,
    LABEL_NODE,
    LABEL_REVISION,
    LABEL_SPEC,
    CreateRequest,
    ImageMissing,
    NameTaken,
    PullFailure,
    Runtime,
    RuntimeContainer,
    RuntimeFailure,
    podname,
    pull_failure,
    spec_hash,
)
from tingyu.common.models.containers import (
    ContainerReport,
    DesiredContainer,
    DesiredState,
    NodeDesired,
    PodPhase,
)
from tingyu.common.policy import Policy

log = logging.getLogger(__name__)

MAX_IMAGES_SEEN = 1024


@dataclass
class _Outcome:
    container: RuntimeContainer | None
    error: str = ""
    waiting: bool = False  # the error may pass (an unreachable registry): Pending, not Failed


class Reconciler:
    """One machine's reconciler over any Runtime (Docker, or a simulated engine)."""

    def __init__(
        self,
        runtime: Runtime,
        node_uuid: str,
        applied: AppliedRestarts | None = None,
        parallel: int = 4,
        policy: Policy | None = None,
    ) -> None:
        self.runtime = runtime
        self.policy = policy or Policy.from_settings()
        self.node_uuid = node_uuid
        self.applied = applied or AppliedRestarts()
        self._lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(max(parallel, 1))
        self._images: set[str] = set()  # seen on the machine: a create needs no look first
        self._saving: asyncio.Task[None] | None = None
        # Names of this machine's containers as of the last listing, with the pass's own creates and
        # removals since (None: not listed yet). A name not in it is created without a look first;
        # should one be there after all (made behind the agent's back), the create says so and the
        # pass looks then.
        self._present: set[str] | None = None

    async def reconcile(
        self, desired: NodeDesired | None, *, removals: bool = True, only: Collection[str] | None = None
    ) -> dict[str, ContainerReport]:
        """One pass: act on every deployment (or on those named in `only`), remove strays, and say
        what each deployment acted on looks like.

        Without `removals` (a state remembered on disk, not read from the platform) nothing is
        removed: neither strays nor deployments marked absent. With `only`, a container of a name
        in it that is no longer desired is a stray; other containers are not looked at.
        """
        wanted = desired.containers if desired else {}
        async with self._lock:
            if only is None:
                current = {c.name: c for c in await self.runtime.list_node(self.node_uuid)}
                self._present = set(current)
            else:
                current = await self._look_up(only)
            if not removals:
                wanted = {n: c for n, c in wanted.items() if c.state != DesiredState.ABSENT}
            names = sorted(wanted if only is None else [n for n in only if n in wanted])
            outcomes = await asyncio.gather(*(self._one(wanted[n], current.get(n)) for n in names))
            for name, out in zip(names, outcomes, strict=True):
                self._seen_as(name, out.container)
            for name, container in current.items():
                if name not in wanted and removals:
                    await self._remove_stray(container)
                    self._seen_as(name, None)
            for name in self.applied.names():
                if name not in wanted:
                    self.applied.forget(name)
            self._save()
        return {
            name: observe(wanted[name], out.container, out.error, waiting=out.waiting)
            for name, out in zip(names, outcomes, strict=True)
        }

    async def _look_up(self, names: Collection[str]) -> dict[str, RuntimeContainer]:
        """The containers of `names`, each found by its name; none is looked for where the last
        listing and the passes since say there is none."""
        present = self._present
        looked = [n for n in names if present is None or n in present]
        found = await asyncio.gather(*(self.runtime.find(self.node_uuid, n) for n in looked))
        return {c.name: c for c in found if c is not None}

    def _seen_as(self, name: str, container: RuntimeContainer | None) -> None:
        if self._present is None:
            return
        if container is None:
            self._present.discard(name)
        else:
            self._present.add(name)

    def _save(self) -> None:
        """Write the restarts carried out in a thread, after the previous write, while the report
        goes out: a crash before it only means a restart may be carried out once more."""
        counts = self.applied.changes()
        if counts is not None:
            self._saving = asyncio.create_task(self._write(self._saving, counts))

    async def _write(self, previous: asyncio.Task[None] | None, counts: dict[str, int]) -> None:
        if previous is not None:
            await previous
        try:
            await asyncio.to_thread(self.applied.write, counts)
        except OSError as exc:
            log.warning("restarts carried out not saved: %s", exc)

    async def _one(self, desired: DesiredContainer, container: RuntimeContainer | None) -> _Outcome:
        async with self._slots:
            try:
                try:
                    container = await self._apply(desired, container)
                except NameTaken:
                    # There after all (not looked for): act on the one there, or fail if it is not ours.
                    self._present = None
                    container = await self.runtime.find(self.node_uuid, desired.name)
                    if container is None:
                        raise
                    container = await self._apply(desired, container)
            except PullFailure as exc:
                log.warning("%s: %s", desired.name, exc)
                return _Outcome(await self._reinspect(container), str(exc), waiting=not exc.permanent)
            except RuntimeFailure as exc:
                log.warning("%s: %s", desired.name, exc)
                return _Outcome(await self._reinspect(container), str(exc))
            return _Outcome(container)

    async def _apply(
        self, desired: DesiredContainer, container: RuntimeContainer | None
    ) -> RuntimeContainer | None:
        if desired.state == DesiredState.ABSENT:
            if container is not None:
                await self.runtime.remove(container.id)
            self.applied.forget(desired.name)
            return None
        # The edge policy holds whoever wrote the desired state; a running container is left as it is.
        refusal = self.policy.mounts_refusal(desired.spec, os.path.realpath)
        if refusal:
            raise RuntimeFailure(f"refused by the edge policy: {refusal}")
        digest = spec_hash(desired.spec)
        fresh = container is None
        if container is not None and container.spec_hash != digest:
            # Fetch the new image before the old container goes, so a bad image leaves it running.
            await self._ensure_image(desired.spec.image_ref)
            container = await self.runtime.replace(container.id, self._request(desired, digest))
            fresh = True
        if container is None:
            container = await self._create(desired, digest)
        acted = fresh
        applied = self.applied.get(desired.name)
        if desired.state == DesiredState.RUNNING:
            if container.status in ("created", "exited", "dead"):
                await self.runtime.start(container.id)
                acted = True
            elif not fresh and applied is not None and desired.restarts > applied:
                await self.runtime.restart(container.id)
                acted = True
            if desired.fallback is not None and fresh:
                # A new version in flight: one that crashes at once must fail (and roll back), not
                # read Running for a moment. Other starts are not held up.
                await self.runtime.settle(container.id)
        elif container.alive:
            await self.runtime.stop(container.id)
            acted = True
        # A new container, or one this machine has no record of, counts as already restarted.
        self.applied.set(desired.name, desired.restarts)
        # Untouched, it is as the pass found it (just inspected): no second look.
        return await self._reinspect(container) if acted else container

    async def _create(self, desired: DesiredContainer, digest: str) -> RuntimeContainer:
        """Create at once when the image was seen here before; a create that finds it gone (removed
        since) fetches it and creates again."""
        image_ref = desired.spec.image_ref
        if image_ref not in self._images:
            await self._ensure_image(image_ref)
        try:
            return await self.runtime.create(self._request(desired, digest))
        except ImageMissing:
            self._images.discard(image_ref)
            await self._ensure_image(image_ref)
            return await self.runtime.create(self._request(desired, digest))

    async def _ensure_image(self, image_ref: str) -> None:
        if await self.runtime.has_image(image_ref):
            self._seen(image_ref)
            return
        refusal = self.policy.image_refusal(image_ref)
        if refusal:
            raise RuntimeFailure(f"refused by the edge policy: {refusal}")
        try:
            await self.runtime.pull(image_ref)
        except PullFailure:
            raise
        except RuntimeFailure as exc:
            raise pull_failure(image_ref, str(exc)) from exc
        self._seen(image_ref)

    def _seen(self, image_ref: str) -> None:
        if len(self._images) >= MAX_IMAGES_SEEN:
            self._images.clear()  # a bound, not a cache policy: the next create looks first again
        self._images.add(image_ref)

    def _request(self, desired: DesiredContainer, digest: str) -> CreateRequest:
        labels = {
            LABEL_NODE: self.node_uuid,
            LABEL_SPEC: digest,
            LABEL_REVISION: str(desired.revision),
            LABEL_JOB: desired.job_id,
        }
        return CreateRequest(name=desired.name, spec=desired.spec, labels=labels)

    async def _reinspect(self, container: RuntimeContainer | None) -> RuntimeContainer | None:
        if container is None:
            return None
        try:
            return await self.runtime.inspect(container.id)
        except RuntimeFailure:
            return container

    async def _remove_stray(self, container: RuntimeContainer) -> None:
        log.info("removing %s: not in this machine's desired state", container.name)
        try:
            await self.runtime.remove(container.id)
        except RuntimeFailure as exc:
            log.warning("cannot remove %s: %s", container.name, exc)


def observe(
    desired: DesiredContainer, container: RuntimeContainer | None, error: str = "", *, waiting: bool = False
) -> ContainerReport:
    """The report of one deployment after a pass, at the revision that pass applied.

    An error that may pass (`waiting`) reads Pending with its text: the job waits for its deadline.
    """
    digest = spec_hash(desired.spec)
    phase, message = (PodPhase.PENDING, error) if waiting else _phase(desired.state, container, error)
    return ContainerReport(
        name=desired.name,
        revision=desired.revision,
        job_id=desired.job_id,
        phase=phase,
        podname=podname(
            desired.name, container.spec_hash if container else digest, container.id if container else ""
        ),
        message=message,
        container_id=container.id if container else "",
        image_ref=container.image_ref if container else desired.spec.image_ref,
        started_at=container.started_at if container else None,
    )


def _phase(state: DesiredState, container: RuntimeContainer | None, error: str) -> tuple[PodPhase, str]:
    if error:
        return PodPhase.FAILED, error
    if state == DesiredState.ABSENT:
        return (PodPhase.DELETED, "") if container is None else (PodPhase.PENDING, "removal pending")
    if container is None:
        return PodPhase.PENDING, ""
    if state == DesiredState.STOPPED:
        return (PodPhase.PENDING, "stopping") if container.alive else (PodPhase.STOPPED, "")
    return _running_phase(container)


def _running_phase(container: RuntimeContainer) -> tuple[PodPhase, str]:
    """A container that should run: anything but running means it died (or has not started yet)."""
    if container.status in ("running", "paused"):
        return PodPhase.RUNNING, ""
    detail = f": {container.error}" if container.error else ""
    if container.status == "restarting":
        return PodPhase.FAILED, f"exited with code {container.exit_code}{detail}; restarting"
    if container.status in ("exited", "dead"):
        return PodPhase.FAILED, f"exited with code {container.exit_code}{detail}"
    return PodPhase.PENDING, container.status
