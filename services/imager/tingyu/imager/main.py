"""Imager entry point: push commands from JetStream, deletes as request/reply, one registry client."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tingyu.common import subjects
from tingyu.common.bus import Bus, consume
from tingyu.common.models.images import ImagePushCommand
from tingyu.common.service import run as run_service
from tingyu.imager.config import ImagerSettings, get_settings
from tingyu.imager.deletes import Deleter
from tingyu.imager.push import Pusher
from tingyu.imager.registry import Registry

log = logging.getLogger(__name__)


async def serve(stop: asyncio.Event, settings: ImagerSettings | None = None) -> None:
    """Run until `stop`: stop consuming, finish in-flight pushes, then close in reverse order."""
    settings = settings or get_settings()
    bus = await Bus.connect(settings.platform, "tingyu-imager")
    registry = Registry(settings.platform, settings.registry_timeout_s)
    try:
        pusher = Pusher(bus, registry, settings)
        pusher.clean_spool()
        deleter = Deleter(bus, registry)
        queries = await bus.nc.subscribe(
            subjects.IMAGER_QUERY, queue=subjects.QUEUE_IMAGER, cb=deleter.on_request
        )
        pushes = asyncio.create_task(
            consume(
                bus,
                stop=stop,
                stream=subjects.COMMANDS,
                durable=subjects.DURABLE_IMAGER_COMMANDS,
                subject=subjects.IMAGE_COMMANDS,
                model=ImagePushCommand,
                handler=pusher.handle,
                batch=settings.concurrency,
                ack_wait=60.0,
                max_deliver=settings.registry_attempts + 1,
            )
        )
        await stop.wait()
        with contextlib.suppress(Exception):
            await queries.unsubscribe()
        await pushes
    finally:
        await registry.close()
        await bus.close()


def run() -> None:
    settings = get_settings()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per registry request is too much
    run_service("imager", lambda stop: serve(stop, settings), settings.platform.log_level)


if __name__ == "__main__":
    run()
