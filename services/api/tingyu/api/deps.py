"""Request dependencies as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tingyu.api.config import ApiSettings, get_settings
from tingyu.common.bus import Bus


def get_bus(request: Request) -> Bus:
    bus: Bus = request.app.state.bus
    return bus


BusDep = Annotated[Bus, Depends(get_bus)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
