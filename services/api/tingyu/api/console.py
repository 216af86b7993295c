"""The web console's files at `/tingyu/console/`, and the AsyncAPI document of the platform's events.

The console is a static bundle built with npm (`console/`, `npm ci && npm run build`, done by
`tingyu up` when node is installed). Whether it is built is looked at per request, so a bundle
built after the API started is served at once; without one, a short page says how to build it.
The pages themselves carry no data: every data call sends the operator's token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from tingyu.common import asyncapi

# console/dist of the source tree this package runs from.
DEFAULT_DIST = Path(__file__).resolve().parents[4] / "console" / "dist"

NOT_BUILT = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>Tingyu console</title></head>
<body style="font-family: sans-serif; margin: 3em">
<h1>控制台尚未构建 / Console not built</h1>
<p>Build it once with <code>cd console &amp;&amp; npm ci &amp;&amp; npm run build</code>
(<code>make up</code> does it when node is installed); the API serves it from then on.</p>
<p>The API itself works without it: <a href="../docs">/tingyu/docs</a>.</p>
</body></html>
"""

router = APIRouter()


@router.get("/asyncapi.json", include_in_schema=False)
async def asyncapi_document() -> dict[str, Any]:
    """Every NATS subject, stream, bucket and message of the platform as AsyncAPI 3.0."""
    return asyncapi.document()


class Console:
    """The built bundle as static files (index.html for folders), or the 'not built' page."""

    def __init__(self, dist: Path) -> None:
        self.dist = dist
        self.files = StaticFiles(directory=dist, html=True, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not (self.dist / "index.html").is_file():
            await HTMLResponse(NOT_BUILT, status_code=200)(scope, receive, send)
            return
        await self.files(scope, receive, send)
