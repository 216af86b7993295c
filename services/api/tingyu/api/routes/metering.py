"""Routes of the contract's metering interfaces."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["metering"])
