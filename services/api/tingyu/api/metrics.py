"""Request metrics and request ids for every API call, and `/metrics` in Prometheus' text format.

The middleware is plain ASGI (not `BaseHTTPMiddleware`), so streamed uploads and downloads pass
through untouched. Each request gets an id (the caller's `X-Request-Id` when it sends a sane one),
echoed in the answer's `X-Request-Id` and carried by every log record of the request.
"""

from __future__ import annotations

import re
import secrets
import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tingyu.common import logs, metrics

router = APIRouter()

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
UNMATCHED = "unmatched"  # a path no route knows: one series, whatever was asked


@router.get("/metrics", include_in_schema=False)
async def prometheus() -> Response:
    """This process's metrics for Prometheus (every series is named `tingyu_…`, plus process_…)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def route_of(scope: Scope, root: str) -> str:
    """The route template that answered (`/tingyu/container/create`), never the raw path: a route
    of a router included under `root` knows only its own part of the path."""
    path = getattr(scope.get("route"), "path", "")
    asked = str(scope.get("path", ""))
    if not isinstance(path, str) or not path:
        return f"{root}/console/" if asked.startswith(f"{root}/console") else UNMATCHED
    return f"{root}{path}" if asked.startswith(f"{root}/") and not path.startswith(f"{root}/") else path


class RequestMetrics:
    """Counts and times every HTTP request by route template and status code, with a request id."""

    def __init__(self, app: ASGIApp, root: str = "") -> None:
        self.app = app
        self.root = root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = given if REQUEST_ID.match(given) else secrets.token_hex(8)
        token = logs.request_id.set(rid)
        started = time.monotonic()
        status = {"code": 500}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route, code = route_of(scope, self.root), str(status["code"])
            metrics.API_REQUESTS.labels(route, code).inc()
            metrics.API_LATENCY.labels(route, code).observe(time.monotonic() - started)
            logs.request_id.reset(token)
