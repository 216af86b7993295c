"""The HTTP client every API sub-command uses: the API root and the caller's bearer token.

The token is `TINGYU_TOKEN`; on the machine that runs `tingyu up`, `./var/api/admin.token` is read
when that is not set (so the local platform works without an export).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import httpx

DEFAULT_API = os.environ.get("TINGYU_API_URL", "http://127.0.0.1:8080/tingyu")
TOKEN_ENV = "TINGYU_TOKEN"
LOCAL_ADMIN_TOKEN = Path("var/api/admin.token")


def token() -> str:
    given = os.environ.get(TOKEN_ENV, "").strip()
    if given:
        return given
    try:
        return LOCAL_ADMIN_TOKEN.read_text().strip()
    except OSError:
        return ""


def auth_headers(value: str | None = None) -> dict[str, str]:
    """`Authorization: Bearer <token>` (nothing when there is no token: the API answers TY0070)."""
    value = token() if value is None else value
    return {"Authorization": f"Bearer {value}"} if value else {}


def api(root: str, **options: Any) -> httpx.Client:
    """A client of the API at `root` that sends the caller's token."""
    return httpx.Client(base_url=root, headers=auth_headers(), **options)


def add_api_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api", default=DEFAULT_API, help=f"the API root (default {DEFAULT_API}; TINGYU_API_URL)"
    )


def fail(answer: dict[str, Any]) -> int:
    """Print a refusal (its TY code, message and detail) and answer the exit code 1."""
    detail = f" ({answer['detail']})" if answer.get("detail") else ""
    print(f"error {answer.get('code')}: {answer.get('msg')}{detail}", file=sys.stderr)
    if answer.get("code") == "TY0070":
        print(
            f"next: export {TOKEN_ENV}=<a token> (on the machine running `tingyu up`: "
            f"`export {TOKEN_ENV}=$(cat {LOCAL_ADMIN_TOKEN})`, or run from the folder holding var/)",
            file=sys.stderr,
        )
    return 1
