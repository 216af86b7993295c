"""Imager entry point: push commands from JetStream, deletes as request/reply, one registry client."""

from __future__ import annotations

import logging

from tingyu.common import imagecatalog, subjects
from tingyu.common.models.images import ImagerRequest
from tingyu.common.service import Service, run_service, settings_checked
from tingyu.imager.config import get_settings
from tingyu.imager.deletes import Deleter
from tingyu.imager.push import Pusher
from tingyu.imager.registry import RegistryClient


async def setup(service: Service) -> None:
    """The registry client and the bus (closed in reverse order), the delete responder, the pushes."""
    settings = get_settings()
    registry = RegistryClient(settings.platform, settings.registry_timeout_s)
    service.stack.push_async_callback(registry.close)
    service.metrics(settings.metrics_port)
    bus = await service.connect(settings.platform)
    await imagecatalog.migrate(bus)  # legacy per-image records become one record per version
    pusher = Pusher(bus, registry, settings)
    pusher.clean_spool()
    deleter = Deleter(bus, registry)
    await service.serve(
        bus, subjects.IMAGER_QUERY, ImagerRequest, deleter.answer, queue=subjects.QUEUE_IMAGER
    )
    service.consume(
        bus, subjects.IMAGER_COMMANDS, pusher.handle, on_dead=pusher.on_dead, batch=settings.concurrency
    )


def run() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per registry request is too much
    with settings_checked("imager"):
        level = get_settings().platform.log_level
    run_service("imager", setup, level)


if __name__ == "__main__":
    run()
