"""Routes of the contract's files interfaces."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["files"])
