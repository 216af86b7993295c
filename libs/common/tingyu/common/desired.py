"""Desired state, one key per deployment: bucket `ty_desired`, key `<node uuid>.<deployment name>`.

One record holds one `DesiredContainer` (64 KiB of env at most, so far below the 1 MiB value
limit), so a machine can hold any number of deployments and a change rewrites one small value. A
machine's whole state is the keys under `<node uuid>.*`. Deleting a deployment purges its key (its
history goes, one purge marker stays until the bucket compacts it). Records of the older layout (a
whole machine under its bare uuid) are split by `migrate` when the deployer starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tingyu.common import subjects
from tingyu.common.bus import Bus, call
from tingyu.common.models.containers import (
    DesiredContainer,
    DesiredListing,
    DesiredListingRequest,
    ListedDeployment,
    NodeDesired,
)

log = logging.getLogger(__name__)

Change = Callable[[DesiredContainer | None], DesiredContainer | None]

# How long a machine waits for a deployer to answer its listing (`served_listing`); a deployer
# drops, unanswered, a request that waited longer than this for its turn.
LISTING_WAIT_S = 3.0


def gather(node_uuid: str, entries: list[DesiredContainer]) -> NodeDesired:
    """One machine's deployments as one document (what the agent reconciles and remembers)."""
    return NodeDesired(node_uuid=node_uuid, containers={entry.name: entry for entry in entries})


class DesiredStore:
    """Reads and writes `ty_desired` by machine and deployment name."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.store = bus.store(subjects.DESIRED)

    async def entry(self, node_uuid: str, name: str) -> tuple[DesiredContainer | None, int]:
        """The deployment and its bucket revision ((None, 0) when absent)."""
        return await self.store.entry(subjects.desired_key(node_uuid, name))

    async def latest(self, node_uuid: str, name: str) -> tuple[DesiredContainer | None, int]:
        """The deployment (None when removed or absent) and the revision of its key's last write,
        a removal included (0 when it has none)."""
        return await self.store.latest(subjects.desired_key(node_uuid, name))

    async def get(self, node_uuid: str, name: str) -> DesiredContainer | None:
        value, _ = await self.entry(node_uuid, name)
        return value

    async def mutate(
        self, node_uuid: str, name: str, change: Change, *, fresh: bool = False
    ) -> tuple[DesiredContainer | None, int]:
        """Compare-and-set one deployment (`change` is pure, may run more than once; None leaves it
        as is). Returns what is stored afterwards and its revision (0 when nothing was written).
        `fresh`: the key most likely does not exist yet (a create), so try to create it before any
        read: one round trip (if it does exist, it is read and changed as usual)."""

        def stamped(current: DesiredContainer | None) -> DesiredContainer | None:
            new = change(current)
            if new is not None and not new.node_uuid:
                new.node_uuid = node_uuid
            return new

        known = (None, 0) if fresh else None
        return await self.store.mutate_entry(subjects.desired_key(node_uuid, name), stamped, known=known)

    async def put(self, node_uuid: str, entry: DesiredContainer) -> int:
        """Store one deployment unconditionally (seeding and tools; the deployer compares-and-sets)."""
        entry = entry.model_copy(update={"node_uuid": node_uuid})
        return await self.store.put(subjects.desired_key(node_uuid, entry.name), entry)

    async def remove(self, node_uuid: str, name: str) -> None:
        """The deployment leaves the desired state for good (its key and history are purged)."""
        await self.store.purge(subjects.desired_key(node_uuid, name))

    async def node(self, node_uuid: str) -> NodeDesired:
        """Every deployment of one machine (empty when it has none)."""
        found = await self.store.entries(subjects.desired_keys(node_uuid))
        return gather(node_uuid, [value for value, _ in found.values()])

    async def listing(self, node_uuid: str) -> dict[str, tuple[DesiredContainer, int]]:
        """Every deployment of one machine with its bucket revision, by name; read the way the
        machine's own credential allows (a consumer filtered on its keys, named after it)."""
        found = await self.store.entries(
            subjects.desired_keys(node_uuid), consumer=subjects.desired_lister(node_uuid)
        )
        return {key.partition(".")[2]: value for key, value in found.items()}

    async def snapshot(self, node_uuid: str) -> DesiredListing:
        """Every deployment of one machine in one cut of the bucket, with the newest write under
        its keys in that cut: one batched direct get, no consumer (what the deployer answers a
        machine's `served_listing` with)."""
        found, newest = await self.store.last_of_each(subjects.desired_keys(node_uuid))
        deployments = {
            key.partition(".")[2]: ListedDeployment(revision=revision, value=value)
            for key, (value, revision) in found.items()
        }
        return DesiredListing(deployments=deployments, newest=newest)

    async def served_listing(
        self, node_uuid: str, timeout: float
    ) -> tuple[dict[str, tuple[DesiredContainer, int]], int]:
        """A machine's own deployments with their revisions, and the newest write under its keys
        (what `newest` reads of them), as a deployer reads them for it (`snapshot`): nothing on
        JetStream's API queue. `TimeoutError`, `NoRespondersError` or the deployer's error when
        none answers."""
        listing = await call(
            self.bus, subjects.desired_listing(node_uuid), DesiredListingRequest(), DesiredListing, timeout
        )
        return {name: (d.value, d.revision) for name, d in listing.deployments.items()}, listing.newest

    async def newest(self, node_uuid: str) -> int:
        """The bucket sequence of the machine's newest write: of any of its deployments' keys
        (removals included) or of its legacy record. Two direct gets; a listing is worth making
        again only when this moved (`Agent`'s periodic read)."""
        keys, legacy = await asyncio.gather(
            self.store.newest_seq(subjects.desired_keys(node_uuid)),
            self.bus.store(subjects.LEGACY_DESIRED).key_seq(node_uuid),
        )
        return max(keys, legacy)

    async def listing_with_legacy(self, node_uuid: str) -> dict[str, tuple[DesiredContainer, int]]:
        """`listing`, plus the deployments of a legacy whole-machine record the deployer has not
        split yet (at that record's revision; a per-deployment key wins)."""
        found = await self.listing(node_uuid)
        legacy, revision = await self.bus.store(subjects.LEGACY_DESIRED).entry(node_uuid)
        return with_legacy(found, legacy, revision)

    async def served_listing_with_legacy(
        self, node_uuid: str, timeout: float
    ) -> tuple[dict[str, tuple[DesiredContainer, int]], int]:
        """`served_listing`, plus the deployments of a legacy record the deployer has not split
        yet, and the newest write as `newest` counts it (the legacy record's included)."""
        (found, newest), (legacy, seq) = await asyncio.gather(
            self.served_listing(node_uuid, timeout), self.bus.store(subjects.LEGACY_DESIRED).latest(node_uuid)
        )
        return with_legacy(found, legacy, seq), max(newest, seq)

    async def everything(self) -> list[DesiredContainer]:
        """Every deployment of the fleet (a scan: for rare questions such as 'who uses this image')."""
        return await self.store.values("*.*")


def with_legacy(
    found: dict[str, tuple[DesiredContainer, int]], legacy: NodeDesired | None, revision: int
) -> dict[str, tuple[DesiredContainer, int]]:
    """A listing with the deployments of a legacy whole-machine record added at that record's
    revision (a per-deployment key wins)."""
    for name, entry in (legacy.containers if legacy else {}).items():
        found.setdefault(name, (entry, revision))
    return found


def _unless_present(entry: DesiredContainer) -> Change:
    return lambda current: None if current is not None else entry


async def migrate(bus: Bus) -> int:
    """Split every legacy whole-machine record (key = bare uuid) into per-deployment keys, then
    remove it. Idempotent: a deployment already written in the new layout is kept (it is newer).
    Returns how many machines were split."""
    legacy = bus.store(subjects.LEGACY_DESIRED)
    desired = DesiredStore(bus)
    split = 0
    for key, (doc, _) in (await legacy.entries("*")).items():
        for name, entry in doc.containers.items():
            await desired.mutate(key, name, _unless_present(entry.model_copy(update={"node_uuid": key})))
        await legacy.delete(key)
        split += 1
        log.info("desired state of %s split into %d keys", key, len(doc.containers))
    return split
