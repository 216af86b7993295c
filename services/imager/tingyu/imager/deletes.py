"""Deleting versions: refused while containers use them; manifests go from the registry, then the catalog.

Served as request/reply on `IMAGER_QUERY` (queue group `tingyu-imager`, see `main.py`), because
only the imager talks to the registry and a delete is short. A refusal is raised as its
`TingyuError`, which the responder helper sends back by its TY code. Blobs stay until the
registry's garbage collection runs (docs/images.md).
"""

from __future__ import annotations

import logging

from tingyu.common.bus import Bus
from tingyu.common.errors import ImageInUse, InvalidParameter
from tingyu.common.models.images import ImagerReply, ImagerRequest
from tingyu.imager import catalog
from tingyu.imager.registry import RegistryClient

log = logging.getLogger(__name__)


class Deleter:
    """Answers `ImagerRequest`s."""

    def __init__(self, bus: Bus, registry: RegistryClient) -> None:
        self.bus = bus
        self.registry = registry

    async def answer(self, request: ImagerRequest) -> ImagerReply:
        if request.op != "delete":
            raise InvalidParameter(detail=f"unknown imager operation {request.op!r}")
        return await self.delete(request.name, request.version)

    async def delete(self, name: str, tag: str) -> ImagerReply:
        """Delete one version (`tag`) or, when `tag` is empty, every version of `name`."""
        record = await catalog.image(self.bus, name)
        if tag:
            await catalog.version(self.bus, name, tag)
        tags = [tag] if tag else sorted(record.versions)
        using = await catalog.users(self.bus, name, tag)
        if using:
            what = f"{name}:{tag}" if tag else name
            raise ImageInUse(detail=f"{what} is used by: {', '.join(using)}")
        keep = {v.digest for t, v in record.versions.items() if t not in tags}
        removed = []
        for one in tags:
            digest = record.versions[one].digest or await self.registry.manifest_digest(name, one)
            # Two tags of one manifest share its digest: deleting it would take the other tag too.
            if digest and digest not in keep and await self.registry.delete_manifest(name, digest):
                removed.append(digest)
        await catalog.remove_versions(self.bus, name, tags)
        log.info("deleted %s versions %s (manifests %s)", name, tags, removed)
        return ImagerReply(image=name, versions=tags, manifests=removed)
