"""The API's front door: every call outside the public paths needs a valid bearer token, and every
change, file download and refused call becomes an audit event.

One ASGI middleware, so that no route can forget either: it answers 429 (too many failed attempts
from this address, without checking the token) and 401 (no token, or an unknown or revoked one)
before any route runs, and leaves the caller in `request.state.principal`; roles and areas are
checked by the routes' dependencies (`deps.Operator`, `deps.Admin`, ...), whose 403 it audits too.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tingyu.api.audit import Auditor, action_of, audited, named, outcome, parse_json
from tingyu.api.auth import FailureLimiter, Keyring, Principal, bearer
from tingyu.api.envelope import error_body
from tingyu.common import logs
from tingyu.common.errors import TingyuError, TooManyFailures, Unauthenticated, Unavailable
from tingyu.common.models.audit import AuditEvent

log = logging.getLogger(__name__)

# Paths under the root that answer without a token: liveness, readiness, the enrollment of a machine
# (it carries its own enrollment token) and the console's page and static files (its data calls
# carry a token), the registry's token service (it takes the registry's Basic credentials). The
# OpenAPI document and its page hold no data and are public too.
PUBLIC = ("/healthz", "/readyz", "/node/enroll", "/registry/token")
PUBLIC_TREES = ("/console",)
MAX_CAPTURE = 1 << 20  # bytes of a JSON request or answer read for the audit (larger: not parsed)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class Doors:
    """Which paths are public, for one root path."""

    root: str
    exact: frozenset[str]
    trees: tuple[str, ...]

    @classmethod
    def of(cls, root: str, extra: tuple[str, ...] = ()) -> Doors:
        return cls(
            root,
            frozenset({f"{root}{path}" for path in PUBLIC} | set(extra)),
            tuple(f"{root}{tree}" for tree in PUBLIC_TREES),
        )

    def public(self, path: str) -> bool:
        return path in self.exact or any(path == tree or path.startswith(f"{tree}/") for tree in self.trees)


@dataclass(frozen=True)
class Actions:
    """The stable action name of every route (`container.create`), matched on the request's path
    before any routing (refusals are audited under the route they were for)."""

    patterns: tuple[tuple[re.Pattern[str], str], ...]

    @classmethod
    def of(cls, root: str, routers: list[APIRouter]) -> Actions:
        found = []
        for router in routers:
            for route in router.routes:
                if isinstance(route, APIRoute):
                    regex, _, _ = compile_path(f"{root}{route.path}")
                    found.append((regex, action_of(f"{root}{route.path}", root)))
        return cls(tuple(found))

    def __call__(self, path: str) -> str:
        """The action of `path`; `unknown` when no route has it."""
        return next((name for regex, name in self.patterns if regex.match(path)), "unknown")


@dataclass
class Call:
    """One request as the audit sees it."""

    scope: Scope
    request_id: str
    action: str
    client: str
    started: float
    principal: Principal | None = None
    status: int = 0
    body: Any = None
    answer: Any = None

    def event(self) -> AuditEvent:
        query = dict(parse_qsl(self.scope.get("query_string", b"").decode(errors="replace")))
        targets, machines = named(query, dict(self.scope.get("path_params") or {}), self.body)
        code, jobs = outcome(self.status, self.answer)
        who = self.principal
        # A public route that checks credentials itself (the registry token service) names the claimed user.
        claimed = str((self.scope.get("state") or {}).get("claimed", ""))
        return AuditEvent(
            time=self.started,
            request_id=self.request_id,
            action=self.action,
            method=method_of(self.scope),
            path=self.scope["path"],
            actor=who.name if who else claimed,
            token_id=who.id if who else "",
            role=who.role.value if who else "",
            areas=sorted(who.areas) if who else [],
            targets=targets,
            machines=machines,
            status=self.status,
            code=code,
            job_ids=jobs,
            client=self.client,
        )


class Gate:
    """ASGI middleware; the keyring, limiter and auditor are on `app.state` (made in the lifespan)."""

    def __init__(self, app: ASGIApp, doors: Doors, actions: Actions) -> None:
        self.app = app
        self.doors = doors
        self.actions = actions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        headers = Headers(scope=scope)
        asked = headers.get("x-request-id", "")
        # The request-metrics middleware outside names the request (and tags the answer) already.
        outer_id = logs.request_id.get()
        call = Call(
            scope,
            outer_id or (asked if _REQUEST_ID.fullmatch(asked) else secrets.token_hex(8)),
            self.actions(scope["path"]),
            (scope.get("client") or ("", 0))[0],
            time.time(),
        )
        if not outer_id:
            send = _tagged(send, call.request_id)
        if self.doors.public(scope["path"]):
            await self.run(call, state.auditor, receive, send)
            return
        limiter: FailureLimiter = state.limiter
        wait = limiter.blocked(call.client)
        if wait:
            detail = f"{call.client} failed to authenticate too often; try again in {math.ceil(wait)} s"
            await self.refuse(
                call, TooManyFailures(detail=detail), receive, send, {"Retry-After": str(math.ceil(wait))}
            )
            if limiter.first_refusal(call.client):
                state.auditor.record(call.event())
            return
        token = bearer(headers.get("authorization", ""))
        keyring: Keyring = state.keyring
        try:
            call.principal = await keyring.principal(token) if token else None
        except Exception as exc:
            log.warning("auth: could not read the token store: %s", exc)
            await self.refuse(call, Unavailable(), receive, send)
            return
        if call.principal is None:
            if token:
                limiter.failed(call.client)
            why = "the token is unknown or revoked" if token else "send Authorization: Bearer <token>"
            await self.refuse(
                call, Unauthenticated(detail=why), receive, send, {"WWW-Authenticate": "Bearer"}
            )
            state.auditor.record(call.event())
            return
        scope.setdefault("state", {})["principal"] = call.principal
        await self.run(call, state.auditor, receive, send)

    async def refuse(
        self,
        call: Call,
        exc: TingyuError,
        receive: Receive,
        send: Send,
        headers: dict[str, str] | None = None,
    ) -> None:
        call.status = exc.http_status
        call.answer = error_body(exc)
        await JSONResponse(call.answer, status_code=exc.http_status, headers=headers)(
            call.scope, receive, send
        )

    async def run(self, call: Call, auditor: Auditor, receive: Receive, send: Send) -> None:
        """Call the app, keeping what the audit needs of the request and the answer."""
        method = method_of(call.scope)
        if call.scope["type"] == "websocket":
            await self.run_session(call, auditor, receive, send)
            return
        if method not in ("GET", "HEAD"):
            receive = await self.read_body(call, receive)
        chunks: list[bytes] = []
        capture = [False]

        async def watching(message: Message) -> None:
            if message["type"] == "http.response.start":
                call.status = message["status"]
                content = Headers(raw=message.get("headers", [])).get("content-type", "")
                capture[0] = content.startswith("application/json")
            elif message["type"] == "http.response.body" and capture[0]:
                chunks.append(message.get("body", b""))
                capture[0] = sum(map(len, chunks)) <= MAX_CAPTURE
            await send(message)

        try:
            await self.app(call.scope, receive, watching)
        finally:
            # A public route refusing a blocked client says when one refusal of the flood is enough.
            repeated = bool((call.scope.get("state") or {}).get("repeated_refusal"))
            if audited(method, call.action, call.status or 500) and not repeated:
                call.status = call.status or 500
                call.answer = parse_json(b"".join(chunks)) if capture[0] else None
                auditor.record(call.event())

    async def run_session(self, call: Call, auditor: Auditor, receive: Receive, send: Send) -> None:
        """A WebSocket (an interactive exec): audited once it ends, with status 101 when it was
        accepted (or the status of the refusal) and the code of its last envelope (the exit, or
        the refusal sent inside the session)."""
        denial: list[bytes] = []

        async def watching(message: Message) -> None:
            kind = message["type"]
            if kind == "websocket.accept":
                call.status = 101
            elif kind == "websocket.http.response.start":
                call.status = message["status"]
            elif kind == "websocket.http.response.body":
                denial.append(message.get("body", b""))
            elif kind == "websocket.close" and not call.status:
                call.status = 403  # closed before it was accepted: the server answers 403
            elif kind == "websocket.send" and message.get("text"):
                answer = parse_json(message["text"].encode())
                if isinstance(answer, dict) and "code" in answer:
                    call.answer = answer
            await send(message)

        try:
            await self.app(call.scope, receive, watching)
        finally:
            call.status = call.status or 500
            if denial:
                call.answer = parse_json(b"".join(denial))
            if audited(method_of(call.scope), call.action, call.status):
                auditor.record(call.event())

    async def read_body(self, call: Call, receive: Receive) -> Receive:
        """A small JSON body is read for the audit and handed on unchanged; any other is not touched."""
        headers = Headers(scope=call.scope)
        length = headers.get("content-length", "")
        if not headers.get("content-type", "").startswith("application/json") or not length.isdigit():
            return receive
        if int(length) > MAX_CAPTURE:
            return receive
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        call.body = parse_json(b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request"))

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        return replay


def method_of(scope: Scope) -> str:
    """The HTTP method; a WebSocket is the GET that asked for the upgrade."""
    return str(scope.get("method", "GET"))


def _tagged(send: Send, request_id: str) -> Send:
    """Every answer carries `X-Request-Id` (the caller's own when it sent a valid one)."""

    async def tagged(message: Message) -> None:
        if message["type"] in ("http.response.start", "websocket.accept", "websocket.http.response.start"):
            message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
        await send(message)

    return tagged
