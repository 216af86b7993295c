"""The API's in-memory views against a real nats-server: they follow puts, deletes and purges,
skip what does not parse, keep reports encoded until read and machines as compact tuples, start
afresh after a reconnect (no stale key), and a final job waits for them."""

from __future__ import annotations

import gc
import logging
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.api.conftest import loaded
from tests.integration.conftest import nats_only
from tests.support import eventually
from tests.support.factories import job_record, name, node_record
from tingyu.api import reads
from tingyu.api.schemas.nodes import node_entry
from tingyu.api.views import AREA, ENTRY, View, Views, machine, unpack
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.bus.stores import Change
from tingyu.common.models.containers import NameClaim, NodeReport
from tingyu.common.models.nodes import NodeStatus
from tingyu.common.names import new_job_id
from tingyu.common.settings import PlatformSettings


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    bus = await Bus.connect(PlatformSettings(nats_url=nats_url), "tingyu-tests-views")
    yield bus
    await bus.close()


async def test_a_view_follows_puts_deletes_and_purges(bus: Bus, views: Views) -> None:
    nodes = bus.store(subjects.NODES)
    record = node_record()
    uuid = record.facts.uuid
    seq = await nodes.put(uuid, record)

    assert await views.nodes.reach(seq, timeout=5)
    assert views.nodes.machine(uuid) == machine(record, views.nodes.timezone)
    assert await reads.node(bus, record.facts.nodename) == reads.Node.of(record)

    changed = record.model_copy(update={"status": NodeStatus.NOT_READY})
    seq = await nodes.put(uuid, changed)
    assert await views.nodes.reach(seq, timeout=5)
    assert views.nodes.machine(uuid) == machine(changed, views.nodes.timezone)
    assert (await reads.node(bus, uuid)).status == NodeStatus.NOT_READY

    await nodes.delete(uuid)
    await eventually(lambda: _absent(views, uuid), timeout=5)

    again = node_record()
    await nodes.put(again.facts.uuid, again)
    kv = await bus.js.key_value(subjects.NODES.name)
    await kv.purge(again.facts.uuid)
    await eventually(lambda: _absent(views, again.facts.uuid), timeout=5)
    assert views.nodes.seq >= await nodes.last_seq()


async def test_a_view_catches_up_with_one_key_by_reading_it_ahead_of_its_watch(bus: Bus) -> None:
    """What a final job waits for: the last write of the keys it changed, a delete included. One
    direct read of the key applies its last write at once, ahead of the watch, and the watch's
    older writes of that key, arriving after, do not undo it (a view not following its bucket
    shows it: what its watch would deliver is applied by hand)."""
    names = bus.store(subjects.NAMES)
    view = View(names, encoded=True)
    view.loading = False  # following, as after its first load
    key = name("vw")
    first = NameClaim(node_uuid=node_record().facts.uuid, job_id=new_job_id())
    second = first.model_copy(update={"job_id": new_job_id()})
    first_seq = await names.put(key, first)
    second_seq = await names.put(key, second)
    for _ in range(3):
        await names.put(name("other"), first)

    assert await view.caught_up(key, timeout=0.1)
    assert view.get(key) == second
    assert view.seq == 0  # the watch's place is where it was
    view.apply(Change(key, None, first_seq, first.to_bytes()))  # the watch gets there later
    assert view.get(key) == second
    view.apply(Change(key, None, second_seq, second.to_bytes()))
    assert view.get(key) == second
    assert view.seq == second_seq

    await names.delete(key)
    deleted_seq = await names.key_seq(key)
    assert await view.caught_up(key, timeout=0.1)
    assert view.get(key) is None
    view.apply(Change(name("other"), None, deleted_seq - 1, first.to_bytes()))
    assert view.get(key) is None
    assert await view.caught_up(name("absent"), timeout=0.1)  # an absent key: nothing to read ahead


async def test_a_loading_view_is_waited_for_not_read_ahead(bus: Bus) -> None:
    """Before its values are in (first load, or again after a reconnect), a view is not written
    ahead: what it holds is about to be swapped. The reader waits for the load, at most `timeout`."""
    names = bus.store(subjects.NAMES)
    view = View(names, encoded=True)
    key = name("vl")
    claimed = NameClaim(node_uuid=node_record().facts.uuid, job_id=new_job_id())
    seq = await names.put(key, claimed)
    assert not await view.caught_up(key, timeout=0.1)
    assert view.get(key) is None
    view.seq = seq
    assert await view.caught_up(key, timeout=0.1)


async def _absent(views: Views, uuid: str) -> bool:
    return views.nodes.machine(uuid) is None and views.nodes.seq > 0


async def test_an_undecodable_record_is_skipped_with_a_log_line(
    bus: Bus, views: Views, caplog: pytest.LogCaptureFixture
) -> None:
    kv = await bus.js.key_value(subjects.REPORTED.name)
    good = node_record()
    caplog.set_level(logging.ERROR)
    seq = await kv.put("tingyu-" + "e" * 32, b"{not json")
    report_seq = await bus.store(subjects.REPORTED).put(
        good.facts.uuid, NodeReport(node_uuid=good.facts.uuid, reported_at=1.0)
    )

    assert await views.observed.reach(max(seq, report_seq), timeout=5)
    assert views.observed.get("tingyu-" + "e" * 32) is None
    assert views.observed.get(good.facts.uuid) is not None
    assert any("does not parse" in record.getMessage() for record in caplog.records)


async def test_the_reports_view_keeps_bytes_and_decodes_a_report_when_read(bus: Bus, views: Views) -> None:
    """Reports are read one machine at a time: the view holds what the bucket holds, undecoded
    and compressed, follows updates and deletes, and a read decodes the latest."""
    reports = bus.store(subjects.REPORTED)
    uuid = node_record().facts.uuid
    first = NodeReport(node_uuid=uuid, reported_at=1.0, seq=1)
    seq = await reports.put(uuid, first)
    assert await views.observed.reach(seq, timeout=5)
    kv = await bus.js.key_value(subjects.REPORTED.name)
    assert unpack(views.observed.stored[uuid]) == (await kv.get(uuid)).value
    assert not views.observed.values  # nothing decoded until read
    assert views.observed.get(uuid) == first
    assert await reads.observed(bus, uuid) == first

    second = first.model_copy(update={"reported_at": 2.0, "seq": 2})
    seq = await reports.put(uuid, second)
    assert await views.observed.reach(seq, timeout=5)
    assert views.observed.get(uuid) == second

    await reports.delete(uuid)

    async def gone() -> bool:
        return views.observed.get(uuid) is None and uuid not in views.observed.stored

    await eventually(gone, timeout=5)


async def test_a_job_the_view_no_longer_holds_is_read_through(bus: Bus) -> None:
    """The jobs view keeps only the most recent jobs; an older one is read from its bucket."""
    views = Views(bus, jobs_capacity=1)
    views.start()
    try:
        await eventually(lambda: loaded(views), timeout=10)
        jobs = bus.store(subjects.JOBS)
        first, second = job_record(), job_record()
        await jobs.put(first.job_id, first)
        seq = await jobs.put(second.job_id, second)
        assert await views.jobs.reach(seq, timeout=5)
        assert views.jobs.get(first.job_id) is None
        assert views.jobs.get(second.job_id) == second
        assert await reads.job(bus, first.job_id) == first
        assert not views.jobs.values  # held encoded: nothing decoded until read
    finally:
        await views.stop()


async def test_a_name_the_view_no_longer_holds_is_read_through(bus: Bus) -> None:
    """The names view keeps the most recently claimed names (a fleet has millions); an older claim
    is read from its bucket, and a claim written again is recent again."""
    views = Views(bus, names_capacity=2)
    views.start()
    try:
        await eventually(lambda: loaded(views), timeout=10)
        names = bus.store(subjects.NAMES)
        owner = node_record().facts.uuid
        claims = {name(): NameClaim(node_uuid=owner, job_id=new_job_id()) for _ in range(3)}
        oldest, middle, newest = claims
        for key, claim in claims.items():
            seq = await names.put(key, claim)
        assert await views.names.reach(seq, timeout=5)
        assert views.names.get(oldest) is None
        assert views.names.get(newest) == claims[newest]
        assert await reads.claim(bus, oldest) == claims[oldest]

        seq = await names.put(middle, claims[middle])  # written again: the newest now
        seq = await names.put(oldest, claims[oldest])
        assert await views.names.reach(seq, timeout=5)
        assert views.names.keys_held() == {middle, oldest}
    finally:
        await views.stop()


async def test_a_report_the_view_no_longer_holds_is_read_through(bus: Bus) -> None:
    """The reports view keeps the most recently written machines' reports (held compressed, about
    1.2 KiB each); an older machine's report is read from its bucket."""
    views = Views(bus, reports_capacity=2)
    views.start()
    try:
        await eventually(lambda: loaded(views), timeout=10)
        reports = bus.store(subjects.REPORTED)
        written: dict[str, NodeReport] = {}
        for at in (1.0, 2.0, 3.0):
            uuid = node_record().facts.uuid
            written[uuid] = NodeReport(node_uuid=uuid, reported_at=at)
            seq = await reports.put(uuid, written[uuid])
        oldest, middle, newest = written
        assert await views.observed.reach(seq, timeout=5)
        assert views.observed.keys_held() == {middle, newest}
        assert await reads.observed(bus, oldest) == written[oldest]
        assert views.observed.get(newest) == written[newest]
    finally:
        await views.stop()


async def test_after_a_reconnect_the_view_starts_afresh_and_keeps_no_stale_key(tmp_path: Path) -> None:
    """The server comes back with an empty store: the keys the view held are gone for good (no delete
    will ever arrive for them), and the view holds exactly what the server holds."""
    server = nats_only(tmp_path)
    settings = PlatformSettings(nats_url=server.config.nats_url)
    bus = await Bus.connect(settings, "tingyu-tests-views-reconnect")
    views = Views(bus)
    try:
        old = node_record()
        await bus.store(subjects.NODES).put(old.facts.uuid, old)
        views.start()
        await eventually(lambda: loaded(views), timeout=10)
        await eventually(lambda: _holds(views, old.facts.uuid), timeout=5)
        loads = views.nodes.loads

        server.kill("nats", signal.SIGKILL)
        shutil.rmtree(tmp_path / "nats" / "jetstream")
        server.start_nats()
        writer = await Bus.connect(settings, "tingyu-tests-views-writer")  # declares the stores again
        try:
            new = node_record()
            await writer.store(subjects.NODES).put(new.facts.uuid, new)

            async def fresh() -> bool:
                held = views.nodes.keys_held()
                return views.nodes.loads > loads and held == {new.facts.uuid}

            await eventually(fresh, timeout=30)
            later = node_record()
            await writer.store(subjects.NODES).put(later.facts.uuid, later)
            await eventually(lambda: _holds(views, later.facts.uuid), timeout=10)
        finally:
            await writer.close()
    finally:
        await views.stop()
        await bus.close()
        server.stop()


async def _holds(views: Views, uuid: str) -> bool:
    return views.nodes.machine(uuid) is not None


async def test_the_nodes_view_keeps_one_untracked_tuple_per_machine_in_listing_order(
    bus: Bus, views: Views
) -> None:
    """Each machine is a plain tuple the garbage collector stops tracking, its `/node/list` entry
    already encoded; a new creation time moves it; a value that does not parse is not listed."""
    nodes = bus.store(subjects.NODES)
    older, newer = node_record(created=2.0), node_record(created=3.0)
    await nodes.put(newer.facts.uuid, newer)
    await nodes.put(older.facts.uuid, older)
    kv = await bus.js.key_value(subjects.NODES.name)
    seq = await kv.put("tingyu-" + "d" * 32, b"{not json")
    assert await views.nodes.reach(seq, timeout=5)

    listed = [m for m in views.nodes.machines() if m[1] in {older.facts.uuid, newer.facts.uuid}]
    assert [m[ENTRY] for m in listed] == [node_entry(r, views.nodes.timezone) for r in (older, newer)]
    assert "tingyu-" + "d" * 32 not in views.nodes.keys_held()
    gc.collect()
    assert not any(gc.is_tracked(m) for m in listed)
    assert listed[0][AREA] is listed[1][AREA]  # decoded apart, an area is held once
    with pytest.raises(TypeError):  # it holds no records: an absent one would read as no machine
        views.nodes.get(older.facts.uuid)

    seq = await nodes.put(older.facts.uuid, older.model_copy(update={"createtime": 4.0}))
    assert await views.nodes.reach(seq, timeout=5)
    order = [m[1] for m in views.nodes.machines() if m[1] in {older.facts.uuid, newer.facts.uuid}]
    assert order == [newer.facts.uuid, older.facts.uuid]
