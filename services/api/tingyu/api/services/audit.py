"""Reading the audit stream a page at a time (oldest first), filtered by time, action and actor."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from nats.js import api as js_api

from tingyu.api.schemas.audit import AuditPage
from tingyu.common import subjects
from tingyu.common.bus import Bus, reading
from tingyu.common.models.audit import AuditEvent

log = logging.getLogger(__name__)

SCAN_PER_EVENT = 20  # events read per event answered at most (an actor filter skips the rest)


@dataclass(frozen=True)
class AuditQuery:
    """What to read: after stream sequence `after`, or from `since`; up to `until` (epoch seconds)."""

    since: float | None = None
    until: float | None = None
    actor: str = ""
    action: str = ""  # `container.create`, or a first part such as `container` for all of its actions
    after: int = 0
    limit: int = 100


def subject_of(action: str) -> str:
    if not action:
        return subjects.AUDIT_ALL
    return subjects.audit(action if "." in action else f"{action}.>")


def start_of(query: AuditQuery) -> js_api.ConsumerConfig:
    """Where the read starts: right after `after`, else at `since`, else at the oldest event."""
    config = js_api.ConsumerConfig(
        filter_subject=subject_of(query.action), deliver_policy=js_api.DeliverPolicy.ALL
    )
    if query.after:
        config.deliver_policy = js_api.DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = query.after + 1
    elif query.since is not None:
        config.deliver_policy = js_api.DeliverPolicy.BY_START_TIME
        config.opt_start_time = dt.datetime.fromtimestamp(query.since, dt.UTC)
    return config


async def page(bus: Bus, query: AuditQuery) -> AuditPage:
    """Up to `limit` events; `next` continues where this page stopped, `more` says whether to."""
    events: list[AuditEvent] = []
    last, scanned, cap = query.after, 0, query.limit * SCAN_PER_EVENT
    async with reading(bus, subjects.AUDIT.name, start_of(query)) as sub:
        while scanned < cap:
            try:
                msgs = await sub.fetch(min(256, cap - scanned), timeout=1.0)
            except TimeoutError:
                break  # nothing more to read
            for msg in msgs:
                scanned += 1
                event = _decode(msg.data)
                if event is not None and query.until is not None and event.time > query.until:
                    return AuditPage(events=events, next=last, more=False)
                last = msg.metadata.sequence.stream
                if event is None or (query.actor and event.actor != query.actor):
                    continue
                events.append(event)
                if len(events) >= query.limit:
                    return AuditPage(events=events, next=last, more=msg.metadata.num_pending > 0)
            if msgs[-1].metadata.num_pending == 0:
                break
        else:
            return AuditPage(events=events, next=last, more=True)  # read as much as one page may
    return AuditPage(events=events, next=last, more=False)


def _decode(data: bytes) -> AuditEvent | None:
    try:
        return AuditEvent.from_bytes(data)
    except ValueError:
        log.warning("audit: an event that does not parse was skipped")
        return None
