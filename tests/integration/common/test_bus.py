"""The NATS adapter against a real nats-server: typed stores, declared consumers with dead letters,
the one responder envelope, and refusals before anything reaches the server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio
from nats.aio.msg import Msg
from nats.js import api as js_api
from nats.js import errors as js_errors
from prometheus_client import REGISTRY

from tests.support import eventually
from tests.support.factories import spec as container_spec
from tingyu.common import subjects
from tingyu.common.bus import Bus, Reject, Retry, call, consume, serve, serve_by_subject
from tingyu.common.bus.consumers import Puller, declare, fetch_listed, park_abandoned, subscribe
from tingyu.common.bus.responders import Handler
from tingyu.common.desired import DesiredStore
from tingyu.common.errors import (
    Conflict,
    ImageNotFound,
    InternalError,
    InvalidParameter,
    PayloadTooLarge,
    Unavailable,
)
from tingyu.common.jobs import JobStore
from tingyu.common.models.base import Message
from tingyu.common.models.containers import ContainerCommand, ContainerOp, DesiredContainer, NameClaim
from tingyu.common.models.dead import DeadLetter
from tingyu.common.models.jobs import JobState
from tingyu.common.settings import PlatformSettings


@pytest_asyncio.fixture(scope="module")
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    connected = await Bus.connect(PlatformSettings(nats_url=nats_url), "test-bus")
    yield connected
    await connected.close()


def key() -> str:
    return f"k{secrets.token_hex(4)}"


async def test_a_store_reads_and_writes_its_model(bus: Bus) -> None:
    names = bus.store(subjects.NAMES)
    k = key()
    assert await names.get(k) is None
    revision = await names.create(k, NameClaim(node_uuid="n1", job_id="j1"))
    with pytest.raises(Conflict):
        await names.create(k, NameClaim(node_uuid="n2", job_id="j2"))
    with pytest.raises(Conflict):
        await names.update(k, NameClaim(node_uuid="n2", job_id="j2"), revision + 1000)
    await names.update(k, NameClaim(node_uuid="n3", job_id="j3"), revision)
    assert await names.get(k) == NameClaim(node_uuid="n3", job_id="j3")
    assert await names.latest(k) == (NameClaim(node_uuid="n3", job_id="j3"), await names.key_seq(k))
    data, seq = await names.latest_held(k)
    assert (names.parse(k, data or b""), seq) == await names.latest(k)
    await names.delete(k)
    assert await names.get(k) is None
    assert await names.latest(k) == (None, await names.key_seq(k))  # the delete's own sequence
    assert await names.latest_held(k) == (None, await names.key_seq(k))
    assert await names.latest_held(key()) == (None, 0)
    assert await names.key_seq(k) > revision
    await names.create(k, NameClaim(node_uuid="n4", job_id="j4"))  # a deleted key can be created again
    assert (await names.get(k)) == NameClaim(node_uuid="n4", job_id="j4")


async def test_each_request_to_a_bucket_is_timed_by_bucket_and_operation_refusals_included(bus: Bus) -> None:
    def count(op: str) -> float:
        labels = {"bucket": subjects.NAMES.name, "op": op}
        return REGISTRY.get_sample_value("tingyu_store_seconds_count", labels) or 0.0

    ops = ("get", "create", "update", "list", "delete")
    before = {op: count(op) for op in ops}
    names = bus.store(subjects.NAMES)
    k = key()
    revision = await names.create(k, NameClaim(node_uuid="n1", job_id="j1"))
    with pytest.raises(Conflict):
        await names.create(k, NameClaim(node_uuid="n2", job_id="j2"))  # refused, and timed all the same
    await names.update(k, NameClaim(node_uuid="n3", job_id="j3"), revision)
    assert await names.get(k) is not None
    assert k in await names.entries(k)
    await names.delete(k)
    timed = {op: count(op) - before[op] for op in ops}
    assert timed == {"get": 1, "create": 2, "update": 1, "list": 1, "delete": 1}


async def test_mutate_is_compare_and_set_under_contention(bus: Bus) -> None:
    names = bus.store(subjects.NAMES)
    k = key()

    def bump(current: NameClaim | None) -> NameClaim:
        count = int(current.job_id) if current else 0
        return NameClaim(node_uuid="n", job_id=str(count + 1))

    await asyncio.gather(*(names.mutate(k, bump) for _ in range(20)))
    assert (await names.get(k)) == NameClaim(node_uuid="n", job_id="20")


async def test_listing_sees_every_key_and_skips_a_corrupt_one(bus: Bus) -> None:
    names = bus.store(subjects.NAMES)
    prefix = key()
    for i in range(30):
        await names.put(f"{prefix}.{i}", NameClaim(node_uuid=f"n{i}", job_id="j"))
    await bus.js.publish(f"{subjects.NAMES.prefix}{prefix}-bad", b"{not json")
    await names.delete(f"{prefix}.3")
    found = await names.items(f"{prefix}.*")
    assert sorted(found) == sorted(f"{prefix}.{i}" for i in range(30) if i != 3)
    assert await names.get(f"{prefix}.bad") is None  # unreadable reads as absent, never raises


async def test_last_of_each_reads_one_cut_of_a_pattern_with_its_newest_write(bus: Bus) -> None:
    """One batched direct get: every current key under the pattern with its revision, a removed
    key and an unreadable value left out, the newest write counting the removal's marker; nothing
    under a pattern reads as empty; past the server's bound of keys it is refused, not cut short."""
    names = bus.store(subjects.NAMES)
    prefix = key()
    written = {
        f"{prefix}.{i}": await names.put(f"{prefix}.{i}", NameClaim(node_uuid=f"n{i}", job_id="j"))
        for i in range(20)
    }
    await bus.js.publish(f"{subjects.NAMES.prefix}{prefix}.bad", b"{not json")
    await names.delete(f"{prefix}.3")
    marker = await names.newest_seq(f"{prefix}.*")
    found, newest = await names.last_of_each(f"{prefix}.*")
    assert {k: seq for k, (_, seq) in found.items()} == {
        k: seq for k, seq in written.items() if k != f"{prefix}.3"
    }
    assert found[f"{prefix}.7"][0] == NameClaim(node_uuid="n7", job_id="j")
    assert newest == marker > max(written.values())
    assert await names.last_of_each(f"{key()}.*") == ({}, 0)

    crowded = key()
    await asyncio.gather(
        *(names.put(f"{crowded}.{i}", NameClaim(node_uuid="n", job_id="j")) for i in range(1025))
    )
    with pytest.raises(Conflict):
        await names.last_of_each(f"{crowded}.*")


async def test_listing_an_empty_bucket_makes_no_consumer(bus: Bus) -> None:
    """A bucket with nothing in it (the rollouts, most of the time, listed at every tick of the
    leader) is answered from the stream's state alone: no consumer made, no pull waited out."""
    spec = subjects.BucketSpec(f"t_{secrets.token_hex(4)}", NameClaim)
    await bus.js.create_key_value(js_api.KeyValueConfig(bucket=spec.name))
    store = bus.store(spec)
    before = (await bus.js.account_info()).api.total
    assert await store.items() == {}
    assert (await bus.js.account_info()).api.total - before <= 2  # the stream's info (and this one)
    await store.put("k", NameClaim(node_uuid="n", job_id="j"))
    assert list(await store.items()) == ["k"]
    await bus.js.delete_key_value(spec.name)


async def test_a_listing_pulls_again_while_its_consumer_is_not_yet_known(bus: Bus) -> None:
    """A pull that no server answers (on a cluster: a consumer made a moment ago on another server)
    is tried again; one that never finds its consumer fails rather than waiting forever."""
    names = bus.store(subjects.NAMES)
    prefix = key()
    await names.put(f"{prefix}.a", NameClaim(node_uuid="n", job_id="j"))
    stream, consumer = subjects.NAMES.stream, f"late_{prefix}"
    sub = await bus.js.pull_subscribe_bind(stream=stream, name=consumer)
    try:
        with pytest.raises(js_errors.ServiceUnavailableError):
            await sub.fetch(1, timeout=1.0)  # no consumer yet: nobody answers the pull
        pulling = asyncio.create_task(fetch_listed(sub, 1, timeout=2.0))
        await asyncio.sleep(0.2)
        config = js_api.ConsumerConfig(
            name=consumer,
            ack_policy=js_api.AckPolicy.NONE,
            filter_subject=f"{subjects.NAMES.prefix}{prefix}.a",
        )
        await bus.js.add_consumer(stream, config)
        [msg] = await pulling
        assert msg.subject == f"{subjects.NAMES.prefix}{prefix}.a"
        await bus.js.delete_consumer(stream, consumer)
        with pytest.raises(js_errors.ServiceUnavailableError):
            await fetch_listed(sub, 1, timeout=1.0)
    finally:
        await sub.unsubscribe()


async def test_watch_yields_changes_and_deletes(bus: Bus) -> None:
    names = bus.store(subjects.NAMES)
    k = key()
    seen: list[tuple[str, NameClaim | None]] = []

    async def follow() -> None:
        async for change in names.watch(k):
            seen.append(change)
            if len(seen) == 2:
                return

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.3)  # the watcher subscribes before the writes
    await names.put(k, NameClaim(node_uuid="a", job_id="1"))
    await names.delete(k)
    await asyncio.wait_for(follower, 10)
    assert seen == [(k, NameClaim(node_uuid="a", job_id="1")), (k, None)]


async def test_an_oversized_value_is_refused_before_the_server(bus: Bus) -> None:
    names = bus.store(subjects.NAMES)
    big = NameClaim(node_uuid="n" * (subjects.NAMES.max_value_bytes + 10), job_id="j")
    with pytest.raises(PayloadTooLarge):
        await names.put(key(), big)
    assert bus.connected


async def test_a_malformed_or_huge_subject_never_reaches_the_server(bus: Bus) -> None:
    claim = NameClaim(node_uuid="n", job_id="j")
    for subject in ("ty.cmd.container." + "x" * 4100, "ty.cmd.container.a b", "ty.cmd..x", "ty.cmd.*"):
        with pytest.raises(InvalidParameter):
            await bus.publish(subject, claim)
    with pytest.raises(PayloadTooLarge):
        await bus.publish("ty.cmd.container.big", NameClaim(node_uuid="n" * bus.nc.max_payload, job_id="j"))
    await bus.nc.flush()
    assert bus.connected
    assert not bus.lost.is_set()


async def test_the_job_store_submits_and_moves_by_one_rule(bus: Bus) -> None:
    jobs = JobStore(bus)
    command = ContainerCommand(
        job_id=f"j{secrets.token_hex(6)}", op=ContainerOp.START, name="w", node_uuid="n", issued_at=1.0
    )
    submitted = await jobs.submit(command)
    assert submitted.state == JobState.QUEUED
    raw = await bus.js.get_last_msg(subjects.COMMANDS.name, subjects.command_subject(command))
    assert ContainerCommand.from_bytes(raw.data or b"") == command
    await jobs.submit(command)  # the same command again: one message (deduplicated by job id)
    info = await bus.js.stream_info(subjects.COMMANDS.name, subjects_filter=subjects.command_subject(command))
    assert info.state.subjects == {subjects.command_subject(command): 1}
    assert (await jobs.move(command.job_id, JobState.RUNNING)).state == JobState.RUNNING  # type: ignore[union-attr]
    back = await jobs.move(command.job_id, JobState.DISPATCHED)  # never back: what is stored stays
    assert back is not None
    assert back.state == JobState.RUNNING
    await jobs.fail(command.job_id, "no")
    fresh = JobStore(bus)  # another replica, without the memory of finished jobs
    await fresh.move(command.job_id, JobState.SUCCEEDED)
    stored = await jobs.get(command.job_id)
    assert stored is not None
    assert (stored.state, stored.message) == (JobState.FAILED, "no")


async def test_a_job_moved_again_by_the_store_that_wrote_it_needs_no_read(bus: Bus) -> None:
    """The next move of an open job this store wrote is one round trip (a compare-and-set on the
    revision it wrote); when another writer moved it meanwhile, the set fails and the key is read."""
    jobs, other = JobStore(bus), JobStore(bus)
    command = ContainerCommand(
        job_id=f"j{secrets.token_hex(6)}", op=ContainerOp.START, name="w", node_uuid="n", issued_at=1.0
    )
    await jobs.submit(command)
    await jobs.move(command.job_id, JobState.DISPATCHED, revision=3)  # read, then written
    before = bus.trip.count
    running = await jobs.move(command.job_id, JobState.RUNNING, "applying")
    assert bus.trip.count - before == 1
    assert running is not None
    assert (running.state, running.revision) == (JobState.RUNNING, 3)

    await other.fail(command.job_id, "the machine went away")  # another replica, in between
    after = await jobs.move(command.job_id, JobState.SUCCEEDED)  # its revision is stale: read, refused
    assert after is not None
    assert (after.state, after.message) == (JobState.FAILED, "the machine went away")
    stored = await jobs.get(command.job_id)
    assert stored is not None
    assert stored.state == JobState.FAILED


async def test_a_fresh_desired_key_is_created_in_one_round_trip_and_an_existing_one_is_changed(
    bus: Bus,
) -> None:
    store = DesiredStore(bus)
    node, name = f"tingyu-{secrets.token_hex(16)}", key()
    entry = DesiredContainer(name=name, spec=container_spec(), job_id="j1", created_at=0.0)
    before = bus.trip.count
    stored, first = await store.mutate(node, name, lambda current: entry, fresh=True)
    assert bus.trip.count - before == 1
    assert stored is not None
    assert first > 0

    def bump(current: DesiredContainer | None) -> DesiredContainer | None:
        # Tried as absent first; the create meets the key, which is then read and changed.
        return entry if current is None else current.model_copy(update={"revision": current.revision + 1})

    stored, second = await store.mutate(node, name, bump, fresh=True)
    assert stored is not None
    assert (stored.revision, second > first) == (2, True)
    assert (await store.get(node, name)) == stored


async def test_a_guard_refusal_leaves_no_job_and_no_command(bus: Bus) -> None:
    jobs = JobStore(bus)
    command = ContainerCommand(
        job_id=f"j{secrets.token_hex(6)}", op=ContainerOp.CREATE, name="w", node_uuid="n", issued_at=1.0
    )

    async def no() -> str:
        return "taken"

    with pytest.raises(Exception, match="taken"):
        await jobs.submit(command, guard=no)
    assert await jobs.get(command.job_id) is None
    info = await bus.js.stream_info(subjects.COMMANDS.name, subjects_filter=subjects.command_subject(command))
    assert not info.state.subjects


class Ping(Message):
    text: str


class Pong(Message):
    text: str
    size: int


async def test_one_reply_envelope_carries_models_and_errors(bus: Bus) -> None:
    subject = f"test.rpc.{secrets.token_hex(4)}"

    async def handler(ping: Ping) -> Pong:
        if ping.text == "missing":
            raise ImageNotFound(detail="no image called missing")
        if ping.text == "boom":
            raise RuntimeError("internal detail that must not leak")
        return Pong(text=ping.text.upper(), size=len(ping.text))

    sub = await serve(bus, subject, Ping, handler, queue="q")
    try:
        assert await call(bus, subject, Ping(text="hi"), Pong) == Pong(text="HI", size=2)
        with pytest.raises(ImageNotFound) as missing:
            await call(bus, subject, Ping(text="missing"), Pong)
        assert missing.value.detail == "no image called missing"
        with pytest.raises(InternalError) as boom:
            await call(bus, subject, Ping(text="boom"), Pong)
        assert "internal detail" not in f"{boom.value} {boom.value.detail}"
    finally:
        await sub.close()


async def test_an_answer_too_large_for_one_message_comes_back_as_the_reason(bus: Bus) -> None:
    subject = f"test.rpc.{secrets.token_hex(4)}"

    async def handler(ping: Ping) -> Pong:
        return Pong(text=ping.text * bus.nc.max_payload, size=0)

    sub = await serve(bus, subject, Ping, handler)
    try:
        with pytest.raises(PayloadTooLarge):  # not a timeout: the responder says why
            await call(bus, subject, Ping(text="x"), Pong, timeout=5.0)
        assert bus.connected
    finally:
        await sub.close()


async def test_a_kv_write_counts_its_subject_and_header_against_the_max_payload(bus: Bus) -> None:
    names = bus.store(subjects.NAMES)
    near = NameClaim(node_uuid="n" * (bus.nc.max_payload - 200), job_id="j")
    assert len(near.to_bytes()) < min(bus.nc.max_payload, subjects.NAMES.max_value_bytes)  # alone, it fits
    with pytest.raises(PayloadTooLarge):
        await names.put(key(), near)
    assert bus.connected


async def test_a_slow_answer_never_holds_up_the_next_request(bus: Bus) -> None:
    subject = f"test.rpc.{secrets.token_hex(4)}"
    released = asyncio.Event()

    async def handler(ping: Ping) -> Pong:
        if ping.text == "slow":
            await released.wait()  # only a later request can release it
        else:
            released.set()
        return Pong(text=ping.text, size=0)

    responder = await serve(bus, subject, Ping, handler)
    try:
        slow = asyncio.create_task(call(bus, subject, Ping(text="slow"), Pong, timeout=10))
        await asyncio.sleep(0.2)
        assert await call(bus, subject, Ping(text="fast"), Pong, timeout=5) == Pong(text="fast", size=0)
        assert (await slow).text == "slow"
    finally:
        await responder.close()


async def test_a_request_that_waited_longer_than_its_asker_is_dropped_unanswered(bus: Bus) -> None:
    """A responder busy with all its slots leaves the requests behind waiting; one whose turn comes
    after `expires_s` is not handled (its asker has stopped waiting) and is counted; one whose
    turn comes in time is answered."""
    subject = f"test.rpc.{secrets.token_hex(4)}"
    released = asyncio.Event()
    handled: list[str] = []
    handler = holding("busy", released, handled)
    responder = await serve_by_subject(bus, subject, Ping, handler, limit=1, expires_s=0.5)
    expired = REGISTRY.get_sample_value("tingyu_rpc_expired_total", {"subject": subject})
    try:
        busy = asyncio.create_task(call(bus, subject, Ping(text="busy"), Pong, timeout=10))
        await eventually(lambda: holds(handled == ["busy"]), timeout=5)
        with pytest.raises(TimeoutError):  # it waits behind "busy" past its asker's patience
            await call(bus, subject, Ping(text="late"), Pong, timeout=0.8)
        released.set()
        assert (await busy).text == "busy"
        assert await call(bus, subject, Ping(text="in time"), Pong, timeout=5) == Pong(text="in time", size=0)
        assert handled == ["busy", "in time"]  # "late" was never handled
        after = REGISTRY.get_sample_value("tingyu_rpc_expired_total", {"subject": subject})
        assert (expired, after) == (0.0, 1.0)
    finally:
        await responder.close()


async def test_a_responder_whose_queue_waited_half_its_askers_patience_says_busy_at_once(bus: Bus) -> None:
    """While the oldest request waiting for a slot has waited half of `expires_s`, a new one is
    answered `Unavailable` ("busy") at once and never handled; one that came before that is
    queued and handled, and once the queue is through requests are handled again."""
    subject = f"test.rpc.{secrets.token_hex(4)}"
    released = asyncio.Event()
    handled: list[str] = []
    handler = holding("slow", released, handled)
    responder = await serve_by_subject(bus, subject, Ping, handler, limit=1, expires_s=2.0)
    before = REGISTRY.get_sample_value("tingyu_rpc_busy_total", {"subject": subject})
    asked = [asyncio.create_task(call(bus, subject, Ping(text="slow"), Pong, timeout=10))]
    try:
        await eventually(lambda: holds(handled == ["slow"]), timeout=5)
        asked.append(asyncio.create_task(call(bus, subject, Ping(text="queued"), Pong, timeout=10)))
        await asyncio.sleep(0.3)
        asked.append(asyncio.create_task(call(bus, subject, Ping(text="early"), Pong, timeout=10)))
        await asyncio.sleep(0.9)  # the oldest waiting ("queued") has now waited over 1 s
        start = time.perf_counter()
        with pytest.raises(Unavailable) as shed:
            await call(bus, subject, Ping(text="shed"), Pong, timeout=10)
        assert time.perf_counter() - start < 0.5  # at once, not after a wait
        assert (shed.value.detail or "").startswith("busy")
        released.set()
        assert [pong.text for pong in await asyncio.gather(*asked)] == ["slow", "queued", "early"]
        assert (await call(bus, subject, Ping(text="after"), Pong, timeout=5)).text == "after"
        assert handled == ["slow", "queued", "early", "after"]  # "shed" was never handled
        after = REGISTRY.get_sample_value("tingyu_rpc_busy_total", {"subject": subject})
        assert (before, after) == (0.0, 1.0)
    finally:
        released.set()
        await asyncio.gather(*asked, return_exceptions=True)
        await responder.close()


def holding(held: str, released: asyncio.Event, handled: list[str]) -> Handler[Ping]:
    """A responder's handler that records each request's text in `handled` and answers it, the
    one whose text is `held` only once `released` is set (it keeps its slot until then)."""

    async def handle(_: str, ping: Ping) -> Pong:
        handled.append(ping.text)
        if ping.text == held:
            await released.wait()
        return Pong(text=ping.text, size=0)

    return handle


async def holds(condition: bool) -> bool:
    return condition


def spec(name: str, max_deliver: int = 3) -> subjects.ConsumerSpec[ContainerCommand]:
    """A consumer of its own subject, so the test's messages meet no other consumer."""
    return replace(
        subjects.DEPLOYER_COMMANDS,
        durable=f"test-{name}",
        subject=f"ty.cmd.container.{name}.>",
        max_deliver=max_deliver,
        ack_wait_s=2.0,
        order_by=None,
    )


async def run_consumer(
    bus: Bus, consumer: subjects.ConsumerSpec[ContainerCommand], handler: object, dead: list[tuple[str, str]]
) -> asyncio.Task[None]:
    stop = asyncio.Event()

    async def on_dead(item: ContainerCommand | None, reason: str, msg_id: str) -> None:
        dead.append((item.job_id if item else msg_id, reason))

    task = asyncio.create_task(consume(bus, consumer, handler, stop, on_dead=on_dead))  # type: ignore[arg-type]
    task.add_done_callback(lambda _: stop.set())
    task.stop = stop  # type: ignore[attr-defined]
    return task


async def dead_letters(bus: Bus, durable: str) -> list[DeadLetter]:
    found = []
    with contextlib.suppress(Exception):
        info = await bus.js.stream_info(subjects.DEAD.name, subjects_filter=subjects.dead(durable))
        if info.state.subjects:
            raw = await bus.js.get_last_msg(subjects.DEAD.name, subjects.dead(durable))
            found.append(DeadLetter.from_bytes(raw.data or b""))
    return found


@pytest.mark.parametrize("failure", ["raise", "retry", "reject", "undecodable"])
async def test_a_message_that_keeps_failing_is_dead_lettered_with_its_reason(bus: Bus, failure: str) -> None:
    name = f"{failure}{secrets.token_hex(3)}"
    consumer = spec(name)
    calls: list[int] = []

    async def handler(item: ContainerCommand, msg: Msg) -> None:
        calls.append(msg.metadata.num_delivered or 0)
        if failure == "raise":
            raise RuntimeError("always broken")
        if failure == "retry":
            raise Retry("not yet", delay=0.05)
        raise Reject("never valid")

    dead: list[tuple[str, str]] = []
    task = await run_consumer(bus, consumer, handler, dead)
    try:
        command = ContainerCommand(
            job_id="j" + name, op=ContainerOp.STOP, name="w", node_uuid="n", issued_at=1.0
        )
        data = b"{broken" if failure == "undecodable" else command.to_bytes()
        await bus.js.publish(f"ty.cmd.container.{name}.x", data, headers={"Nats-Msg-Id": command.job_id})
        letters = await eventually(lambda: dead_letters(bus, consumer.durable), timeout=30)
        assert letters[0].subject == f"ty.cmd.container.{name}.x"
        assert base64.b64decode(letters[0].data_b64) == data
        expected = {
            "raise": "always broken",
            "retry": "not yet",
            "reject": "never valid",
            "undecodable": "undecodable",
        }
        assert expected[failure] in letters[0].reason
        assert len(dead) == 1
        assert dead[0][0] == command.job_id  # the job is named even when the message did not decode
        assert expected[failure] in dead[0][1]
        assert calls == {"raise": [1, 2, 3], "retry": [1, 2, 3], "reject": [1], "undecodable": []}[failure]
        info = await bus.js.consumer_info(subjects.COMMANDS.name, consumer.durable)
        assert (info.num_pending, info.num_ack_pending) == (0, 0)  # ended in its stream, not redelivered
    finally:
        task.stop.set()  # type: ignore[attr-defined]
        await task


async def test_a_slow_message_holds_one_slot_and_one_key_keeps_its_order(bus: Bus) -> None:
    """Four messages in hand at once: while one hangs, the others behind it are handled (its slot
    alone is held, not the fetch it came with), and the later messages of its key wait for it."""
    name = f"window{secrets.token_hex(3)}"
    consumer = replace(spec(name), order_by=lambda c: c.node_uuid)
    release = asyncio.Event()
    done: list[str] = []

    async def handler(item: ContainerCommand, msg: Msg) -> None:
        if item.job_id == "slow-1":
            await release.wait()
        done.append(item.job_id)

    async def send(job_id: str, node: str) -> None:
        command = ContainerCommand(job_id=job_id, op=ContainerOp.STOP, name="w", node_uuid=node, issued_at=1)
        subject = f"ty.cmd.container.{name}.x"
        await bus.js.publish(subject, command.to_bytes(), headers={"Nats-Msg-Id": job_id})

    async def handled(count: int) -> bool:
        return len(done) >= count

    stop = asyncio.Event()
    task = asyncio.create_task(consume(bus, consumer, handler, stop, batch=4))
    try:
        await send("slow-1", "slow")
        for index in range(10):
            await send(f"quick-{index}", f"node-{index}")
        await send("slow-2", "slow")
        await send("slow-3", "slow")
        await eventually(lambda: handled(10), timeout=20)
        assert sorted(done) == sorted(f"quick-{index}" for index in range(10))  # slow-1 still hangs
        release.set()
        await eventually(lambda: handled(13), timeout=20)
        assert [job for job in done if job.startswith("slow")] == ["slow-1", "slow-2", "slow-3"]
    finally:
        release.set()
        stop.set()
        await task


async def test_a_slow_look_at_the_backlog_never_holds_up_a_message(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load JetStream's API may take its whole timeout to answer a consumer-info request
    (10 s at 100 000 machines). The consumer's look at its backlog, for the gauges, must not stand
    between a message and its handler: here every look takes 30 s."""
    name = f"backlog{secrets.token_hex(3)}"
    real = bus.js.consumer_info
    looks: list[str] = []

    async def slow_info(*args: object, **kwargs: object) -> js_api.ConsumerInfo:
        looks.append("asked")
        await asyncio.sleep(30)
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bus.js, "consumer_info", slow_info)
    done: list[str] = []

    async def handler(item: ContainerCommand, msg: Msg) -> None:
        done.append(item.job_id)

    async def handled() -> bool:
        return bool(done)

    stop = asyncio.Event()
    task = asyncio.create_task(consume(bus, spec(name), handler, stop))
    try:
        command = ContainerCommand(
            job_id="j" + name, op=ContainerOp.STOP, name="w", node_uuid="n", issued_at=1
        )
        await bus.js.publish(f"ty.cmd.container.{name}.x", command.to_bytes())
        await eventually(handled, timeout=5)
        assert done == [command.job_id]
        assert looks  # the backlog was being looked at meanwhile
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)  # the look under way does not hold up the stop either


async def test_a_message_nobody_answers_is_dead_lettered_from_the_advisory(bus: Bus) -> None:
    """A reader that takes every delivery and never answers (a hung or dying replica): once JetStream
    gives up, the advisory parks the message and fails its job; it leaves the stream."""
    name = f"hang{secrets.token_hex(3)}"
    consumer = spec(name, max_deliver=2)
    dead: list[tuple[str, str]] = []

    async def on_dead(item: ContainerCommand | None, reason: str, msg_id: str) -> None:
        dead.append((item.job_id if item else msg_id, reason))

    advisories = await park_abandoned(bus, consumer, on_dead)
    sub = await subscribe(bus, consumer)
    try:
        command = ContainerCommand(
            job_id="j" + name, op=ContainerOp.STOP, name="w", node_uuid="n", issued_at=1.0
        )
        ack = await bus.js.publish(
            f"ty.cmd.container.{name}.x", command.to_bytes(), headers={"Nats-Msg-Id": "m"}
        )

        async def take() -> list[tuple[str, str]]:
            with contextlib.suppress(TimeoutError):
                await sub.fetch(1, timeout=0.5)  # taken, never answered
            return dead

        assert await eventually(take, timeout=30) == [(command.job_id, "no answer after 2 deliveries")]
        letters = await dead_letters(bus, consumer.durable)
        assert [letter.reason for letter in letters] == ["no answer after 2 deliveries"]
        with pytest.raises(Exception, match="no message found"):
            await bus.js.get_msg(subjects.COMMANDS.name, seq=ack.seq)
    finally:
        await advisories.unsubscribe()
        await sub.unsubscribe()


async def test_a_consumer_made_by_an_older_version_takes_the_declared_settings(bus: Bus) -> None:
    name = f"old{secrets.token_hex(3)}"
    consumer = spec(name, max_deliver=7)
    await bus.js.add_consumer(
        subjects.COMMANDS.name,
        js_api.ConsumerConfig(
            durable_name=consumer.durable,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            max_deliver=-1,
            ack_wait=120.0,
            filter_subject=consumer.subject,
        ),
    )
    sub = await subscribe(bus, consumer)
    try:
        info = await bus.js.consumer_info(subjects.COMMANDS.name, consumer.durable)
        assert (info.config.max_deliver, info.config.ack_wait) == (7, consumer.ack_wait_s)
    finally:
        await sub.unsubscribe()


async def test_a_key_of_another_form_reads_as_absent_and_is_never_written(bus: Bus) -> None:
    jobs = bus.store(subjects.JOBS)
    for bad in ("x" * 4100, "a b", "a*", "a>", "", ".hidden", "job\n"):
        assert await jobs.get(bad) is None
        with pytest.raises(InvalidParameter):
            await bus.store(subjects.NAMES).put(bad, NameClaim(node_uuid="n", job_id="j"))
    await bus.nc.flush()
    assert bus.connected


async def test_a_pull_is_bounded_in_bytes_and_says_when_it_stopped_there(bus: Bus) -> None:
    """A pull asked for by count alone takes whatever size the messages have: 4 096 agent batches
    were 70 MB, past what nats-server lets wait for one client (it then cut the connection). Here
    a pull stops at its byte bound, says so, and the next one goes on where it stopped."""
    name = f"bytes{secrets.token_hex(3)}"
    stream = subjects.StreamSpec(name=f"T_{name}", subjects=[f"{name}.>"])  # TY_SAMPLES is metering's
    await bus.js.add_stream(name=stream.name, subjects=stream.subjects)
    pulled = replace(subjects.METERING_SAMPLES, stream=stream, durable=name, subject=f"{name}.x")
    await declare(bus, pulled, 64)
    bound = bus.nc.max_payload  # the least a bound may be: one message as large as NATS takes
    message = b"x" * (bound // 4)
    for _ in range(12):
        await bus.js.publish(pulled.subject, message)
    puller = Puller(bus, pulled, max_bytes=bound)
    await puller.start()
    try:
        first = await puller.pull(64, 2.0, held=False)
        assert 1 <= len(first) <= 4, len(first)
        assert puller.capped
        taken = list(first)
        while len(taken) < 12:
            more = await puller.pull(64, 2.0, held=False)
            assert more, "the stream still holds messages"
            taken += more
        assert len(taken) == 12
        assert not await puller.pull(64, 0.5, held=False)  # drained ...
        assert not puller.capped  # ... not cut at the bound
    finally:
        await puller.stop()
        await bus.js.delete_stream(stream.name)
