"""Reading one stored object chunk by chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.js.api import ObjectInfo

from tingyu.common import subjects
from tingyu.common.bus.connection import Bus


async def object_chunks(bus: Bus, spec: subjects.ObjectStoreSpec, info: ObjectInfo) -> AsyncIterator[bytes]:
    """The chunks of one stored object, one stream read at a time, so a reader never holds it whole.

    (`ObjectStore.get` gathers the whole object in memory unless given a blocking file to write to.)
    """
    chunk_subject = f"$O.{spec.name}.C.{info.nuid}"
    seq = 1
    for _ in range(info.chunks or 0):
        msg = await bus.js.get_msg(spec.stream, seq=seq, subject=chunk_subject, next=True)
        yield msg.data or b""
        seq = (msg.seq or seq) + 1
