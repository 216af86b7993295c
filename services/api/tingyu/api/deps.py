"""Request dependencies as `Annotated` aliases.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a
thread hop per request for what is only an attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tingyu.api.config import ApiSettings, get_settings
from tingyu.common.bus import Bus


async def get_bus(request: Request) -> Bus:
    bus: Bus = request.app.state.bus
    return bus


async def settings() -> ApiSettings:
    return get_settings()


BusDep = Annotated[Bus, Depends(get_bus)]
SettingsDep = Annotated[ApiSettings, Depends(settings)]
