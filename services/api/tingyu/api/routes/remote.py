"""Remote operations on containers behind NAT (extensions of the contract; docs/remote.md): logs,
exec and image pre-pull, all through the machine agent's own NATS connection.

All of them are operator routes, limited to the machines of a token's areas: exec runs commands
in customers' containers, and logs may show whatever those containers print (secrets included), as
a fetched file may. The gate authenticates the WebSocket's upgrade like any request (docs/security.md).
"""

from __future__ import annotations

import shlex
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, WebSocket
from fastapi.responses import StreamingResponse
from starlette.responses import Response

from tingyu.api.config import get_settings
from tingyu.api.deps import BusDep, Operator, SessionOperator, SettingsDep, operator
from tingyu.api.envelope import Envelope, EnvelopeRoute, ok
from tingyu.api.schemas.remote import ExecBody, ExecResult, JobAccepted, LogLines
from tingyu.api.services import prepull, remote
from tingyu.common import timefmt
from tingyu.common.bus import Bus
from tingyu.common.errors import TingyuError, Unavailable
from tingyu.common.models.remote import LogsRequest

ONLY_OPERATORS = [Depends(operator)]
router = APIRouter(
    prefix="/container", tags=["remote"], route_class=EnvelopeRoute, dependencies=ONLY_OPERATORS
)
images = APIRouter(prefix="/image", tags=["remote"], route_class=EnvelopeRoute, dependencies=ONLY_OPERATORS)
# WebSockets: no router-level bearer scheme (FastAPI's reads only plain requests); the route
# declares its operator itself.
sessions = APIRouter(prefix="/container", tags=["remote"])

STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "with follow=true: one line per event"}
}
PrepullBody = Annotated[dict[str, Any], Body()]


async def logs_request(
    settings: SettingsDep,
    *,
    name: str = Query("", description="The deploymentname"),
    tail: int = Query(100, description="Lines from the end (0 to the configured maximum)"),
    since: str = Query("", description="Epoch seconds, yyyy-MM-dd HH:mm:ss, or a duration back (10m)"),
    timestamps: bool = Query(False, description="Prefix each line with Docker's RFC 3339 time"),
    follow: bool = Query(False, description="Stream new lines as text/event-stream"),
    seconds: float = Query(0, description="follow: end the stream after this long (0: the maximum)"),
) -> LogsRequest:
    """The logs query, checked: tail and seconds within the configured limits, since parsed."""
    return LogsRequest(
        name=name.strip(),
        tail=remote.check_tail(tail, settings),
        since=remote.parse_since(since, settings.platform.timezone, timefmt.now()),
        timestamps=timestamps,
        follow=follow,
        max_s=remote.follow_seconds(seconds, settings) if follow else 0.0,
    )


LogsQuery = Annotated[LogsRequest, Depends(logs_request)]


@router.get("/logs", response_model=Envelope[LogLines], responses=STREAM)
async def logs(
    who: Operator, bus: BusDep, settings: SettingsDep, request: LogsQuery
) -> Response | Envelope[LogLines]:
    """A container's last lines of stdout and stderr; with follow=true, new lines as server-sent events."""
    if not request.follow:
        return ok(await remote.lines(bus, settings, request, caller=who))
    stream = await remote.follow(bus, settings, request, caller=who)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream.events(), media_type="text/event-stream", headers=headers)


@router.post("/exec", response_model=Envelope[ExecResult])
async def exec_command(
    who: Operator, bus: BusDep, settings: SettingsDep, body: ExecBody
) -> Envelope[ExecResult]:
    """Run a command in a running container and answer its output and exit code (operator role)."""
    return ok(await remote.run(bus, settings, body.name.strip(), body.cmd, body.timeout, caller=who))


@sessions.websocket("/exec")
async def exec_session(
    websocket: WebSocket,
    who: SessionOperator,
    *,
    name: str = "",
    cmd: Annotated[list[str] | None, Query()] = None,
    tty: bool = True,
    cols: int = 0,
    rows: int = 0,
) -> None:
    """Interactive exec (operator role): binary frames carry stdin and output; text frames carry
    `{"resize": [cols, rows]}` from the client and the last envelope with the exit code."""
    await websocket.accept()
    bus: Bus = websocket.app.state.bus
    parts = shlex.split(cmd[0]) if cmd and len(cmd) == 1 else list(cmd or [])
    try:
        opened = await remote.session(
            bus, get_settings(), name.strip(), parts, tty=tty, size=(cols, rows), caller=who
        )
    except TingyuError as exc:
        await remote.refuse(websocket, exc)
        return
    except TimeoutError:
        await remote.refuse(websocket, Unavailable())
        return
    await opened.bridge(websocket)


@images.post("/prepull", response_model=JobAccepted)
async def prepull_image(who: Operator, bus: BusDep, settings: SettingsDep, body: PrepullBody) -> JobAccepted:
    """Pull an image onto an area's and operator's machines (or listed uuids) ahead of a rollout."""
    job = await prepull.start(bus, settings, body, caller=who)
    return JobAccepted(msg="success", code=200, data=None, jobid=job)
