"""Routes of the contract's images interfaces."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["images"])
