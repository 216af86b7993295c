"""The API's in-memory views over the `bus` of the test module that asks for them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support import eventually
from tingyu.api.views import Views
from tingyu.common.bus import Bus


async def loaded(views: Views) -> bool:
    return not views.loading()


@pytest.fixture
async def views(bus: Bus) -> AsyncIterator[Views]:
    """Views started on the module's own bus, once their first load is in."""
    held = Views(bus)
    held.start()
    await eventually(lambda: loaded(held), timeout=10)
    yield held
    await held.stop()
