"""A machine's NATS credential against the real nats-server: its own subjects and nothing else;
revocation cuts it off; no anonymous connection; no TLS connection without the platform's CA."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import api as js_api

from tests.support import NATS_CA, eventually, machine_creds, machine_settings
from tests.support.factories import spec
from tingyu.common import subjects
from tingyu.common.auth.enrollment import revoke_machine
from tingyu.common.auth.permissions import machine_inbox
from tingyu.common.bus import Bus
from tingyu.common.bus.connection import connect_options
from tingyu.common.desired import DesiredStore
from tingyu.common.models.containers import DesiredContainer
from tingyu.common.models.enroll import EnrollRecord, MachineKey
from tingyu.common.names import new_job_id, new_node_identity
from tingyu.common.settings import PlatformSettings


class Machine:
    """A raw connection with one machine's credential that records the server's refusals."""

    def __init__(self, uuid: str, creds: Path, public_key: str) -> None:
        self.uuid = uuid
        self.creds = creds
        self.public_key = public_key
        self.refusals: list[str] = []
        self.nc: Client | None = None

    async def connect(self, nats_url: str, **extra: Any) -> Client:
        async def on_error(exc: Exception) -> None:
            self.refusals.append(str(exc))

        options = connect_options(machine_settings(nats_url, self.creds, self.uuid))
        self.nc = await nats.connect(
            nats_url,
            inbox_prefix=machine_inbox(self.uuid),
            error_cb=on_error,
            connect_timeout=3,
            **options,
            **extra,
        )
        return self.nc

    async def refused(self, subject: str) -> bool:
        async def seen() -> bool:
            return any(subject.lower() in r.lower() and "permissions" in r.lower() for r in self.refusals)

        try:
            return await eventually(seen, timeout=5)
        except AssertionError as exc:
            raise AssertionError(f"{subject} not refused; refusals: {self.refusals}") from exc


@pytest_asyncio.fixture(scope="module")
async def admin(nats_url: str) -> AsyncIterator[Bus]:
    bus = await Bus.connect(PlatformSettings(nats_url=nats_url), "security-tests")
    yield bus
    await bus.close()


def new_machine(folder: Path) -> Machine:
    uuid, _ = new_node_identity()
    creds, public_key = machine_creds(folder, uuid)
    return Machine(uuid, creds, public_key)


@pytest_asyncio.fixture
async def pair(nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[Machine, Machine]]:
    """Two enrolled machines, A connected."""
    a, b = new_machine(tmp_path), new_machine(tmp_path)
    await a.connect(nats_url)
    yield a, b
    if a.nc is not None and not a.nc.is_closed:
        await a.nc.close()


def mapped(subject: str) -> str:
    """Where nats-server delivers a message published on `subject` (heartbeats are mapped onto
    their partition subject)."""
    prefix = subjects.heartbeat.prefix
    token = subject.removeprefix(prefix + ".")
    if subject.startswith(prefix + ".") and "." not in token:
        return f"{prefix}.{subjects.partition_of(token, subjects.HEARTBEAT_PARTITIONS)}.{token}"
    return subject


async def processed(nc: Client) -> None:
    """Return once the server has processed everything `nc` published. nats-py writes a flush's
    PING ahead of the publishes still in its buffer, so one flush can come back before them; the
    second PING goes after them."""
    await nc.flush()
    await nc.flush()


async def received(admin: Bus, subject: str, publish: Any, expect: int = 0) -> list[bytes]:
    """What an admin subscriber on `subject` gets while `publish()` runs: once `expect` messages
    have come (waited for, however loaded the machine), and a moment more for any extra one."""
    got: list[bytes] = []

    async def keep(msg: Any) -> None:
        got.append(msg.data)

    sub = await admin.nc.subscribe(subject, cb=keep)
    await admin.nc.flush()
    await publish()
    await admin.nc.flush()

    async def arrived() -> bool:
        return len(got) >= expect

    if expect:
        with contextlib.suppress(AssertionError):  # the caller's assertion shows what did come
            await eventually(arrived, timeout=30)
    await asyncio.sleep(0.3)  # a denied message never arrives: give a stray one time to show
    await sub.unsubscribe()
    return got


async def test_machine_publishes_only_on_its_own_subjects(admin: Bus, pair: tuple[Machine, Machine]) -> None:
    a, b = pair
    assert a.nc is not None
    nc = a.nc

    async def own() -> None:
        await nc.publish(subjects.heartbeat(a.uuid), b"{}")
        await nc.flush()

    assert await received(admin, mapped(subjects.heartbeat(a.uuid)), own, expect=1) == [b"{}"]
    for subject in (
        subjects.heartbeat(b.uuid),
        f"{subjects.heartbeat.prefix}.0.{b.uuid}",  # another's partition subject, published directly
        subjects.report(b.uuid),
        subjects.samples(b.uuid),
        subjects.agent_nudge(b.uuid),
        subjects.desired_listing(b.uuid),  # another machine's listing, as a deployer would serve it
        "ty.cmd.container.forged",
        f"$KV.ty_desired.{a.uuid}",  # not even its own desired state: it only reads it
        subjects.joblog(new_job_id()),  # a job's log lines come from the central services only
    ):

        async def forged(subject: str = subject) -> None:
            await nc.publish(subject, b"{}")
            await nc.flush()

        assert await received(admin, mapped(subject), forged) == []
        assert await a.refused(mapped(subject))  # the server names the subject it checked


async def test_machine_reads_only_its_own_desired_state(
    admin: Bus, pair: tuple[Machine, Machine], nats_url: str
) -> None:
    a, b = pair
    store = DesiredStore(admin)
    for machine in (a, b):
        for name in ("web", "db"):
            await store.mutate(machine.uuid, name, lambda _, m=machine, n=name: desired_container(m.uuid, n))
    bus = await Bus.connect(machine_settings(nats_url, a.creds, a.uuid), "machine-a", ensure=False)
    try:
        own = DesiredStore(bus)
        mine = await own.get(a.uuid, "web")
        assert mine is not None
        assert mine.node_uuid == a.uuid
        assert set(await own.listing(a.uuid)) == {"web", "db"}  # the resync lists its own keys
        # A listing consumer a crash left behind, half read: the next listing still sees every key.
        lister = subjects.desired_lister(a.uuid)
        await bus.js.add_consumer(
            subjects.DESIRED.stream,
            js_api.ConsumerConfig(
                name=lister,
                deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
                ack_policy=js_api.AckPolicy.NONE,
                mem_storage=True,
                filter_subject=subjects.DESIRED.prefix + subjects.desired_keys(a.uuid),
            ),
        )
        left = await bus.js.pull_subscribe_bind(stream=subjects.DESIRED.stream, name=lister)
        assert len(await left.fetch(1, timeout=5.0)) == 1
        await left.unsubscribe()
        assert set(await own.listing(a.uuid)) == {"web", "db"}
        with pytest.raises(Exception):  # noqa: B017, PT011 - the request is denied, nats-py times out
            await own.get(b.uuid, "web")
        with pytest.raises(Exception):  # noqa: B017, PT011 - another machine's filter: denied
            await own.listing(b.uuid)
        with pytest.raises(Exception):  # noqa: B017, PT011 - its own consumer name, another's keys
            await bus.store(subjects.DESIRED).entries(
                subjects.desired_keys(b.uuid), consumer=subjects.desired_lister(a.uuid)
            )
        with pytest.raises(Exception):  # noqa: B017, PT011 - every key of the bucket: denied
            await bus.store(subjects.DESIRED).entries(">", consumer=subjects.desired_lister(a.uuid))
    finally:
        await bus.close()


def desired_container(node_uuid: str, name: str) -> DesiredContainer:
    return DesiredContainer(name=name, node_uuid=node_uuid, spec=spec(), job_id="0" * 32, created_at=0.0)


async def test_machine_touches_no_other_bucket_or_stream(pair: tuple[Machine, Machine]) -> None:
    a, _b = pair
    assert a.nc is not None
    js = a.nc.jetstream(timeout=1.0)
    for stream in ("KV_ty_jobs", "KV_ty_desired", "TY_COMMANDS", "OBJ_ty_files"):
        with pytest.raises(Exception):  # noqa: B017, PT011 - denied: no reply ever comes
            await js.stream_info(stream)
    with pytest.raises(Exception):  # noqa: B017, PT011
        await js.publish("ty.cmd.container.forged", b"{}")
    with pytest.raises(Exception):  # noqa: B017, PT011
        await js.get_msg("KV_ty_jobs", subject="$KV.ty_jobs.x", direct=True)
    assert await a.refused("$JS.API.STREAM.INFO.KV_ty_jobs")


async def test_machine_subscribes_only_to_its_own_subjects(pair: tuple[Machine, Machine]) -> None:
    a, b = pair
    assert a.nc is not None
    await a.nc.subscribe(subjects.agent_nudge(a.uuid))
    await a.nc.flush()
    for subject in (subjects.agent_all(b.uuid), "_INBOX.>", subjects.HEARTBEATS_ALL, "$KV.ty_desired.>"):
        await a.nc.subscribe(subject)
        await a.nc.flush()
        assert await a.refused(subject)
    assert not any(subjects.agent_nudge(a.uuid) in refusal for refusal in a.refusals)


async def test_revoked_machine_is_cut_off(admin: Bus, nats_url: str, tmp_path: Path) -> None:
    machine = new_machine(tmp_path)
    record = MachineKey(node_uuid=machine.uuid, public_key=machine.public_key, enrolled_at=time.time())
    await admin.store(subjects.ENROLL).put(subjects.machine_key(machine.uuid), EnrollRecord(machine=record))
    nc = await machine.connect(nats_url, max_reconnect_attempts=1, reconnect_time_wait=0.2)
    await nc.publish(subjects.heartbeat(machine.uuid), b"{}")
    await nc.flush()

    assert (
        await revoke_machine(admin, PlatformSettings(nats_url=nats_url), machine.uuid) == machine.public_key
    )

    await eventually(lambda: _closed(nc), timeout=10)
    with pytest.raises(Exception, match=r"(?i)authorization|revoked"):
        await Machine(machine.uuid, machine.creds, machine.public_key).connect(
            nats_url, allow_reconnect=False
        )
    stored = await admin.store(subjects.ENROLL).get(subjects.machine_key(machine.uuid))
    assert stored is not None
    assert stored.machine is not None
    assert stored.machine.revoked_at > 0


async def _closed(nc: Client) -> bool:
    return nc.is_closed or not nc.is_connected


async def test_anonymous_connection_is_refused(nats_url: str) -> None:
    context = ssl.create_default_context(cafile=str(NATS_CA))
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(nats_url, tls=context, allow_reconnect=False, connect_timeout=3)


async def test_tls_without_the_ca_fails_to_verify(nats_url: str) -> None:
    options = connect_options(PlatformSettings(nats_url=nats_url))
    options.pop("tls")
    with pytest.raises(ssl.SSLCertVerificationError):
        await nats.connect(nats_url, allow_reconnect=False, connect_timeout=3, **options)


async def test_machine_streams_many_answers_to_a_request_it_received(
    admin: Bus, pair: tuple[Machine, Machine]
) -> None:
    """Followed logs and interactive exec answer one request with many messages on its inbox."""
    a, _b = pair
    assert a.nc is not None
    nc = a.nc
    asked: list[str] = []

    async def on_request(msg: Any) -> None:
        asked.append(msg.reply)

    await nc.subscribe(subjects.agent_request(a.uuid, "logs"), cb=on_request)
    await nc.flush()
    inbox = admin.nc.new_inbox()
    other_inbox = admin.nc.new_inbox()  # an inbox of the same asker that the machine was never given

    async def stream() -> None:
        await admin.nc.publish(subjects.agent_request(a.uuid, "logs"), b"{}", reply=inbox)
        await admin.nc.flush()
        await eventually(lambda: _got(asked), timeout=5)
        for n in range(300):
            await nc.publish(asked[0], str(n).encode())
        await nc.flush()

    got = await received(admin, inbox, stream, expect=300)
    assert got == [str(n).encode() for n in range(300)]

    async def elsewhere() -> None:
        await nc.publish(other_inbox, b"forged")
        await nc.flush()

    assert await received(admin, other_inbox, elsewhere) == []
    assert await a.refused(other_inbox)


async def test_a_stream_keeps_its_inbox_while_the_asker_names_it_and_loses_it_after(
    admin: Bus, nats_url: str, tmp_path: Path
) -> None:
    uuid, _ = new_node_identity()
    creds, public_key = machine_creds(tmp_path, uuid, reply_ttl_s=2.0)  # the real one: an hour
    machine = Machine(uuid, creds, public_key)
    nc = await machine.connect(nats_url)
    try:
        await nc.subscribe(subjects.agent_all(machine.uuid))
        await nc.flush()
        inbox = admin.nc.new_inbox()
        session_input = subjects.agent_exec_input(machine.uuid, "s1")

        async def keep_alive_then_answer() -> None:
            await admin.nc.publish(subjects.agent_request(machine.uuid, "exec"), b"{}", reply=inbox)
            for n in range(8):  # 4 s, past the 2 s allowance: each keep-alive names the inbox again
                await asyncio.sleep(0.5)
                await admin.nc.publish(session_input, b"{}", reply=inbox)
                await processed(admin.nc)
                await nc.publish(inbox, f"out-{n}".encode())
                await processed(nc)  # right after the keep-alive that allows it

        answers = await received(admin, inbox, keep_alive_then_answer, expect=8)
        assert answers == [f"out-{n}".encode() for n in range(8)], machine.refusals

        async def after_silence() -> None:
            await asyncio.sleep(3.0)  # the asker named the inbox last more than 2 s ago
            await nc.publish(inbox, b"late")
            await nc.flush()

        assert await received(admin, inbox, after_silence) == []
        assert await machine.refused(inbox)
    finally:
        await nc.close()


async def _got(values: list[str]) -> bool:
    return bool(values)
