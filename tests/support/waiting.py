"""Names and waiting: each test makes its own names and waits on conditions, never on sleeps."""

from __future__ import annotations

import asyncio
import contextvars
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import nats.errors

T = TypeVar("T")


def unique(prefix: str = "t") -> str:
    """A fresh DNS-1123 name for one test."""
    return f"{prefix}{secrets.token_hex(5)}"


class TransientAnswer(Exception):
    """The API answered 503 (TY0010: a worker or NATS was briefly unavailable); asking again may work."""


# Failures that say "not now" rather than "wrong": `eventually` asks again after them.
TRANSIENT: tuple[type[BaseException], ...] = (
    TimeoutError,
    httpx.TransportError,
    nats.errors.Error,
    TransientAnswer,
)
_RETRYING: contextvars.ContextVar[bool] = contextvars.ContextVar("retrying", default=False)


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float = 60.0, every: float = 0.2
) -> T:
    """Poll an async check until it returns something truthy; fail with its last value otherwise.

    A transient failure inside the check (a timeout, a dropped connection, a TY0010 answer from the
    `api` client) counts as "not yet"; if it is still the last thing seen at the deadline, it is raised.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        token = _RETRYING.set(True)
        try:
            last = await check()
        except TRANSIENT as exc:
            last = exc
        finally:
            _RETRYING.reset(token)
        if last and not isinstance(last, BaseException):
            return last  # type: ignore[no-any-return]
        if asyncio.get_running_loop().time() > deadline:
            if isinstance(last, BaseException):
                raise AssertionError(f"condition not met within {timeout}s; last error: {last!r}") from last
            raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")
        await asyncio.sleep(every)


async def raise_transient(response: httpx.Response) -> None:
    """Event hook of the `api` client: inside `eventually`, a TY0010 answer is retried, not read."""
    if response.status_code == 503 and _RETRYING.get():
        await response.aread()
        raise TransientAnswer(response.text)
