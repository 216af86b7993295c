"""The `eventually` helper: a transient failure is "not yet", anything else fails at once."""

from __future__ import annotations

import pytest

from tests.support import TransientAnswer, eventually


async def test_transient_errors_are_retried_until_the_check_holds() -> None:
    calls: list[int] = []

    async def check() -> str | None:
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError("nats request timed out")
        if len(calls) == 2:
            raise TransientAnswer('{"code":"TY0010"}')
        return "done" if len(calls) > 3 else None

    assert await eventually(check, timeout=5, every=0.01) == "done"
    assert len(calls) == 4


async def test_a_transient_error_still_there_at_the_deadline_fails_the_wait() -> None:
    async def check() -> bool:
        raise TimeoutError("never answers")

    with pytest.raises(AssertionError, match="never answers"):
        await eventually(check, timeout=0.1, every=0.01)


async def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    async def check() -> bool:
        calls.append(1)
        raise KeyError("a real bug")

    with pytest.raises(KeyError):
        await eventually(check, timeout=5, every=0.01)
    assert len(calls) == 1
