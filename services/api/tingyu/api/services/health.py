"""Readiness: can this API process serve requests that need its dependencies right now?

It checks what every non-trivial request needs: the views loaded (`views.py`), the NATS
connection, and JetStream answering an account-info request within `READY_TIMEOUT_S` (a
connected client whose JetStream is gone or unreachable would still fail every write). The
workers behind request/reply (imager, metering) are not checked: their routes answer TY0010 on
their own when no worker answers, and the rest of the API works without them.
"""

from __future__ import annotations

import asyncio

from tingyu.api.schemas.health import Ready
from tingyu.api.views import Views
from tingyu.common.bus import Bus
from tingyu.common.errors import Unavailable

READY_TIMEOUT_S = 2.0


async def readiness(bus: Bus, views: Views | None) -> Ready:
    """Ready, or Unavailable (TY0010, HTTP 503) whose detail names what is not."""
    problems = []
    loading = views.loading() if views is not None else ["views not started"]
    if loading:
        problems.append(f"views: still loading {', '.join(loading)}")
    jetstream = False
    if not bus.connected:
        problems.append("nats: not connected")
    else:
        try:
            await asyncio.wait_for(bus.js.account_info(), READY_TIMEOUT_S)
            jetstream = True
        except Exception as exc:  # a timeout, no responders, an API error: not answering
            problems.append(f"jetstream: no answer ({type(exc).__name__})")
    if problems:
        raise Unavailable(detail="; ".join(problems))
    return Ready(nats=True, jetstream=jetstream)
