"""The ClickHouse adapter: embedded chDB or a server through clickhouse-connect, one SQL for both.

Statements use server-side parameters (`{name:Type}`), which both engines bind themselves.
chDB and clickhouse-connect calls block: they run in one worker thread, so they are also
serialised (a chDB session must not be used from two threads at once).
"""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

Params = dict[str, Any]


class Engine(Protocol):
    """What `ClickHouse` needs of an engine; both are blocking."""

    def command(self, sql: str, params: Params | None = None) -> None: ...
    def rows(self, sql: str, params: Params | None = None) -> list[list[Any]]: ...
    def close(self) -> None: ...


class ChdbEngine:
    """Embedded chDB owning `path` (one process per path)."""

    def __init__(self, path: Path) -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        # chdb ships no type hints.
        self._session: Any = session.Session(str(path))

    def command(self, sql: str, params: Params | None = None) -> None:
        self._session.query(sql, "Null", params=_chdb_params(params))

    def rows(self, sql: str, params: Params | None = None) -> list[list[Any]]:
        result = self._session.query(sql, "JSONCompact", params=_chdb_params(params))
        data = result.bytes()
        if not data:
            return []
        rows: list[list[Any]] = json.loads(data)["data"]
        return rows

    def close(self) -> None:
        self._session.close()


def _chdb_params(params: Params | None) -> dict[str, str]:
    """chDB takes parameter values as text: arrays must be spelled as ClickHouse literals."""
    return {name: _text(value) for name, value in (params or {}).items()}


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(_quoted(v) for v in value) + "]"
    return str(value)


def _quoted(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


class ServerEngine:
    """A ClickHouse server over HTTP; replicas of metering can share it."""

    def __init__(self, url: str) -> None:
        import clickhouse_connect

        self._client = clickhouse_connect.get_client(dsn=url)

    def command(self, sql: str, params: Params | None = None) -> None:
        self._client.command(sql, parameters=params or None)

    def rows(self, sql: str, params: Params | None = None) -> list[list[Any]]:
        return [list(row) for row in self._client.query(sql, parameters=params or None).result_rows]

    def close(self) -> None:
        self._client.close()


class ClickHouse:
    """Async face of an engine: every call runs in the store's one thread, in call order."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")

    @classmethod
    def open(cls, clickhouse_url: str, chdb_path: Path) -> ClickHouse:
        engine: Engine = ServerEngine(clickhouse_url) if clickhouse_url else ChdbEngine(chdb_path)
        return cls(engine)

    async def command(self, sql: str, params: Params | None = None) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self.engine.command, sql, params)

    async def rows(self, sql: str, params: Params | None = None) -> list[list[Any]]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.engine.rows, sql, params)

    async def apply_schema(self, schema: Path) -> None:
        text = await asyncio.to_thread(schema.read_text)
        for statement in split_statements(text):
            await self.command(statement)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self.engine.close)
        self._pool.shutdown(wait=True)


def split_statements(text: str) -> list[str]:
    """The `;`-separated statements of a schema file, without `--` comment lines."""
    body = "\n".join(line for line in text.splitlines() if not re.match(r"\s*--", line))
    return [part.strip() for part in body.split(";") if part.strip()]
