"""Answering the API's range queries (request/reply on `METERING_QUERY`, queue group of metering
replicas, served by the bus's one responder helper: a failure is raised as its `TingyuError`)."""

from __future__ import annotations

from tingyu.common.errors import InvalidTimeRange
from tingyu.common.models.metering import MeteringColumns, MeteringQuery, MeteringReply
from tingyu.metering.queries import run_query
from tingyu.metering.store import ClickHouse


class QueryResponder:
    """Answers `MeteringQuery`s from one ClickHouse store."""

    def __init__(self, store: ClickHouse) -> None:
        self.store = store

    async def answer(self, query: MeteringQuery) -> MeteringReply:
        """The points and summary of the query's series; TY0040 when the range is reversed."""
        if query.start > query.end:
            raise InvalidTimeRange("时间范围错误: start is after end")
        points, summary = await run_query(self.store, query, (query.series,))
        return MeteringReply(columns=MeteringColumns.of(points, query.series), summary=summary)
