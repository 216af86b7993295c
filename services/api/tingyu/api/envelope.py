"""The contract's `{msg, code, data|info}` envelope and the one translator of errors into it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from nats import errors as nats_errors
from nats.js import errors as js_errors
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

from tingyu.common.errors import (
    AccessRefused,
    BadImageArchive,
    InternalError,
    InvalidRequest,
    MissingParameter,
    TingyuError,
    Unavailable,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# The type of a key that an answer leaves out rather than sets to null (`str | Absent = None`):
# `EnvelopeRoute` drops keys a view did not set, and OpenAPI shows the key as optional, never null.
Absent = SkipJsonSchema[None]


class Envelope(BaseModel, Generic[T]):
    """A success answer with `data` (container, node, image and file interfaces)."""

    msg: str = Field(description="success, or what went wrong with part of the request")
    code: int = Field(description="200")
    data: T


class InfoEnvelope(BaseModel, Generic[T]):
    """A success answer with `info` (task and metering interfaces)."""

    msg: str = Field(description="success")
    code: int = Field(description="200")
    info: T


class ErrorBody(BaseModel):
    """Every refused request: the TY code and a message a person understands (`detail` when there is more)."""

    msg: str
    code: str = Field(description="TYxxxx (docs/api.md lists them)")
    detail: str | None = None


class ContractErrorBody(BaseModel):
    """A refused file request, in the contract's own shape, with our TY code beside it."""

    msg: str
    code: int = Field(description="500")
    error: str
    tycode: str


def ok(data: T, msg: str = "success") -> Envelope[T]:
    """Success with `data`."""
    return Envelope(msg=msg, code=200, data=data)


def ok_info(info: T, msg: str = "success") -> InfoEnvelope[T]:
    """Success with `info`."""
    return InfoEnvelope(msg=msg, code=200, info=info)


class EnvelopeRoute(APIRoute):
    """Every JSON route: a key a view leaves unset is absent from the answer (not `null`), as the
    contract's answers show; a key set to None answers `null`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        kwargs["response_model_exclude_unset"] = True
        super().__init__(path, endpoint, **kwargs)


def error_body(exc: TingyuError) -> dict[str, Any]:
    if isinstance(exc, BadImageArchive):
        # The contract's upload error `{"msg": "上传失败!…", "code": 500}`, our code and reason beside it.
        return {"msg": exc.msg, "code": 500, "tycode": exc.code, "detail": exc.detail or ""}
    body: dict[str, Any] = {"msg": exc.msg, "code": exc.code}
    if exc.detail:
        body["detail"] = exc.detail
    return body


def _describe(errors: list[Any]) -> tuple[type[TingyuError], str]:
    """A person-readable sentence out of pydantic's validation errors."""
    parts = []
    missing = False
    for err in errors[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query")]
        where = ".".join(loc) or "body"
        if err.get("type") == "missing":
            missing = True
            parts.append(f"{where} is required")
        elif err.get("type") == "json_invalid":
            parts.append("the body is not valid JSON")
        else:
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
    kind: type[TingyuError] = MissingParameter if missing and len(parts) == 1 else InvalidRequest
    return kind, "; ".join(parts)


def install(app: FastAPI) -> None:
    """Register the translators once: domain errors, validation errors, HTTP errors, everything else."""

    @app.exception_handler(TingyuError)
    async def domain_error(_: Request, exc: TingyuError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        kind, text = _describe(list(exc.errors()))
        return JSONResponse(error_body(kind(detail=text)), status_code=200)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            body = {"msg": "接口不存在", "code": "TY0004"}
        elif exc.status_code == 405:
            body = {"msg": "请求方法不支持", "code": "TY0005"}
        else:
            body = {"msg": str(exc.detail), "code": InvalidRequest.code}
        return JSONResponse(body, status_code=exc.status_code)

    async def timeout(_: Request, exc: Exception) -> JSONResponse:
        log.warning("bus unavailable: %r", exc)
        return JSONResponse(error_body(Unavailable()), status_code=503)

    for kind in BUS_UNAVAILABLE:
        app.add_exception_handler(kind, timeout)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(error_body(InternalError()), status_code=500)


# A NATS server or stream leader failing over: nothing was written, the call may be repeated (TY0010).
BUS_UNAVAILABLE: tuple[type[Exception], ...] = (
    TimeoutError,
    nats_errors.NoRespondersError,
    nats_errors.ConnectionClosedError,
    js_errors.NoStreamResponseError,
    js_errors.ServiceUnavailableError,
)


# --- The file interfaces' error shape (contract §七) ----------------------------------------------

CONTRACT_UNKNOWN_ERROR = "Abnormal error, please contact the administrator"


def contract_error_body(exc: TingyuError) -> dict[str, Any]:
    """`{msg, code: 500, error, tycode}`: the contract's file error shape, with our TY code beside it."""
    return {"msg": exc.msg, "code": 500, "error": exc.detail or exc.msg, "tycode": exc.code}


class ContractErrorRoute(EnvelopeRoute):
    """A route whose errors take the contract's `{msg, code: 500, error}` shape (the file interfaces)."""

    missing_status: int = 200  # HTTP status of a domain error (the contract answers errors with 200)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except AccessRefused:
                raise  # who may call is answered alike on every route (the app's translator)
            except TingyuError as exc:
                status = exc.http_status if exc.http_status != 200 else self.missing_status
                return JSONResponse(contract_error_body(exc), status_code=status)
            except BUS_UNAVAILABLE as exc:
                log.warning("bus unavailable: %r", exc)
                return JSONResponse(contract_error_body(Unavailable()), status_code=503)
            except RequestValidationError as exc:
                kind, text = _describe(list(exc.errors()))
                return JSONResponse(contract_error_body(kind(detail=text)))
            except Exception:
                log.exception("unexpected error")
                return JSONResponse(contract_error_body(InternalError(detail=CONTRACT_UNKNOWN_ERROR)), 500)

        return route


class ContractDownloadRoute(ContractErrorRoute):
    """Like ContractErrorRoute, but a missing or expired download answers HTTP 404 (so `curl -f` fails)."""

    missing_status = 404


# --- The registry token service's error shape -------------------------------------------------------

REGISTRY_ERROR_CODES = {401: "UNAUTHORIZED", 403: "DENIED", 429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}


def registry_error_body(exc: TingyuError) -> dict[str, Any]:
    """Distribution's `{"errors": [{code, message, detail}]}`, which `docker pull` shows to its user,
    with our envelope's `msg` and TY `code` beside it."""
    message = f"{exc.msg}: {exc.detail}" if exc.detail else exc.msg
    code = REGISTRY_ERROR_CODES.get(exc.http_status, "UNAUTHORIZED")
    return {
        "errors": [{"code": code, "message": message, "detail": exc.code}],
        **error_body(exc),
    }


class RegistryErrorRoute(EnvelopeRoute):
    """A route the registry's clients call (Docker, the imager): refusals in the registry's shape,
    401 with a Basic challenge (the token service takes HTTP Basic credentials)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except TingyuError as exc:
                status = exc.http_status if exc.http_status != 200 else 400
                headers = {"WWW-Authenticate": 'Basic realm="tingyu registry"'} if status == 401 else None
                return JSONResponse(registry_error_body(exc), status_code=status, headers=headers)
            except BUS_UNAVAILABLE as exc:
                log.warning("bus unavailable: %r", exc)
                return JSONResponse(registry_error_body(Unavailable()), status_code=503)

        return route
