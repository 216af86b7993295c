"""Faults injected into the platform's own client code (never into NATS or Docker)."""

from __future__ import annotations

import pytest

from tingyu.common.desired import DesiredStore
from tingyu.common.models.containers import DesiredContainer


def failing_key_reads(monkeypatch: pytest.MonkeyPatch, failures: list[Exception]) -> None:
    """From now on a machine's read of one desired key (`DesiredStore.latest`, its direct get of a
    nudged key) raises the last of `failures` while any are left (the list may be added to later),
    then reads as before."""
    read = DesiredStore.latest

    async def flaky(self: DesiredStore, uuid: str, key: str) -> tuple[DesiredContainer | None, int]:
        if failures:
            raise failures.pop()
        return await read(self, uuid, key)

    monkeypatch.setattr(DesiredStore, "latest", flaky)
