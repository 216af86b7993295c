"""Durable JetStream consumers, declared once (`subjects.ConsumerSpec`) and run by `consume`.

What happens to a message is said by its handler:
- it returns: the message is acked;
- it raises `Retry`: the message is nak'ed and comes back after the delay;
- it raises `Reject`, or the message does not decode: it is dead-lettered at once;
- anything else: logged and nak'ed with a back-off.
A message is never retried forever nor dropped silently: on its last delivery (the spec's bounded
`max_deliver`) a failure dead-letters it, and a message JetStream gives up on without an answer
(its handler hung or its process died every time) is dead-lettered from the max-deliveries
advisory. Dead-lettering copies the message with its headers and the last error to `TY_DEAD`,
removes it from its stream, and calls the service's `on_dead` (which fails the job with the reason).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

from tingyu.common import logs, metrics, subjects, timefmt
from tingyu.common.bus.connection import Bus
from tingyu.common.models.base import Message
from tingyu.common.models.dead import DeadLetter

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

Handler = Callable[[M, Msg], Awaitable[None]]
# (the message decoded or None, the reason, its Nats-Msg-Id: a command's job id even when it did not decode)
OnDead = Callable[[M | None, str, str], Awaitable[None]]


class Retry(Exception):
    """Raised by a handler: try this message again after `delay` seconds."""

    def __init__(self, reason: str, delay: float = 1.0) -> None:
        super().__init__(reason)
        self.delay = delay


class Reject(Exception):
    """Raised by a handler: this message can never succeed; dead-letter it."""


class Window:
    """Handlers in flight, at most `size` of them. Those started with the same key (not None) run
    one after the other in the order they were started. A handler that raises ends the consumer's
    run with its error (at the next `room` or `drain`), so the service restarts the consumer."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tasks: set[asyncio.Task[None]] = set()
        self.tails: dict[Hashable, asyncio.Task[None]] = {}  # per key, the last handler started
        self.freed = asyncio.Event()
        self.error: BaseException | None = None

    @property
    def free(self) -> int:
        return self.size - len(self.tasks)

    def start(self, key: Hashable, work: Callable[[], Awaitable[None]]) -> None:
        before = self.tails.get(key) if key is not None else None

        async def after() -> None:
            if before is not None:
                await asyncio.wait({before})  # whatever its end: the next message of the key goes on
            await work()

        task = asyncio.create_task(after())
        self.tasks.add(task)
        if key is not None:
            self.tails[key] = task
        task.add_done_callback(functools.partial(self._done, key))

    def _done(self, key: Hashable, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if key is not None and self.tails.get(key) is task:
            del self.tails[key]
        if not task.cancelled() and task.exception() is not None and self.error is None:
            self.error = task.exception()
        self.freed.set()

    async def room(self, wanted: int) -> None:
        """Wait until `wanted` slots are free (or the window is empty)."""
        while self.error is None and self.free < min(wanted, self.size) and self.tasks:
            self.freed.clear()
            await self.freed.wait()
        self._raise()

    async def drain(self) -> None:
        """Wait for every handler in flight."""
        while self.tasks:
            await asyncio.wait(set(self.tasks))
        self._raise()

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error


class Consumer(Generic[M]):
    """One durable consumer of a spec on one connection: fetch, dispatch, settle."""

    def __init__(
        self, bus: Bus, spec: subjects.ConsumerSpec[M], handler: Handler[M], on_dead: OnDead[M] | None
    ) -> None:
        self.bus = bus
        self.spec = spec
        self.handler = handler
        self.on_dead = on_dead

    async def run(self, stop: asyncio.Event, batch: int | None = None) -> None:
        """Pull and handle until `stop` is set, with up to `batch` messages in hand at once. A slot
        is refilled as soon as enough are free (a quarter of the window), so one slow message holds
        one slot, not the whole fetch it came with. Messages with the same `spec.order_by` key run
        one after the other, in stream order."""
        size = batch or self.spec.batch
        sub = await subscribe(self.bus, self.spec, size)
        advisories = await park_abandoned(self.bus, self.spec, self.on_dead)
        window = Window(size)
        try:
            async with backlog_watched(self.bus, self.spec):
                while not stop.is_set():
                    await window.room(max(1, size // 4))
                    for msg in await fetch(sub, window.free, self.spec.durable):
                        item, error = self.decode(msg)
                        window.start(self._group(item), functools.partial(self.handle, msg, item, error))
                await window.drain()
        except asyncio.CancelledError:
            window.cancel()
            raise
        finally:
            for subscription in (sub, advisories):
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()

    def decode(self, msg: Msg) -> tuple[M | None, str]:
        """The message's item, or None and why it does not decode."""
        try:
            return self.spec.model.from_bytes(msg.data), ""
        except ValueError as exc:
            return None, str(exc)

    def _group(self, item: M | None) -> Hashable:
        if self.spec.order_by is None or item is None:
            return None
        return self.spec.order_by(item)

    async def handle(self, msg: Msg, item: M | None, error: str = "") -> None:
        # A command's message id is its job id: every record logged while handling it names the job.
        logs.job_id.set((msg.headers or {}).get("Nats-Msg-Id", ""))
        outcome = "dead"
        if item is None:
            await self.dead(msg, None, f"undecodable message: {error}")
            metrics.CONSUMER_HANDLED.labels(self.spec.durable, outcome).inc()
            return
        deliveries = msg.metadata.num_delivered or 1
        if deliveries > 1:
            metrics.CONSUMER_REDELIVERED.labels(self.spec.durable).inc()
        else:
            observe_wait(self.spec, item)
        last = 0 < self.spec.max_deliver <= deliveries
        try:
            await self.handler(item, msg)
        except Retry as exc:
            if last:
                await self.dead(msg, item, f"still not done after {deliveries} deliveries: {exc}")
            else:
                outcome = "retried"
                log.debug("%s: retry %s in %.1fs: %s", self.spec.durable, msg.subject, exc.delay, exc)
                await msg.nak(delay=exc.delay)
        except Reject as exc:
            await self.dead(msg, item, str(exc))
        except Exception as exc:
            log.exception(
                "%s: handler failed on %s (delivery %d)", self.spec.durable, msg.subject, deliveries
            )
            if last:
                await self.dead(msg, item, f"failed {deliveries} times; last error: {exc!r}")
            else:
                outcome = "retried"
                await msg.nak(delay=min(0.5 * 2**deliveries, 30.0))
        else:
            outcome = "acked"
            await msg.ack()
        metrics.CONSUMER_HANDLED.labels(self.spec.durable, outcome).inc()

    async def dead(self, msg: Msg, item: M | None, reason: str) -> None:
        """Park the message in `TY_DEAD`, tell the service, and end it in its stream."""
        await dead_letter(
            self.bus,
            self.spec,
            subject=msg.subject,
            data=msg.data,
            headers=msg.headers,
            reason=reason,
            metadata=msg.metadata,
        )
        await tell(self.spec, self.on_dead, item, reason, (msg.headers or {}).get("Nats-Msg-Id", ""))
        with contextlib.suppress(Exception):
            await msg.term()


async def tell(
    spec: subjects.ConsumerSpec[M], on_dead: OnDead[M] | None, item: M | None, reason: str, msg_id: str
) -> None:
    """Let the service know (it fails the job); a failure to do so is logged, never raised."""
    if on_dead is None:
        return
    try:
        await on_dead(item, reason, msg_id)
    except Exception:
        log.exception("%s: could not report a dead letter: %s", spec.durable, reason)


async def park_abandoned(bus: Bus, spec: subjects.ConsumerSpec[M], on_dead: OnDead[M] | None) -> Subscription:
    """Dead-letter what JetStream gave up on without an answer (its handler hung or its process died
    at every delivery), from the max-deliveries advisory; one replica handles each (queue group)."""

    async def on_advisory(advisory: Msg) -> None:
        try:
            seq = int(json.loads(advisory.data)["stream_seq"])
            raw = await bus.js.get_msg(spec.stream.name, seq=seq)
        except (ValueError, KeyError, js_errors.Error) as exc:
            log.warning("%s: max-deliveries advisory not handled: %s", spec.durable, exc)
            return
        reason = f"no answer after {spec.max_deliver} deliveries"
        data = raw.data or b""
        await dead_letter(bus, spec, subject=raw.subject or "", data=data, headers=raw.headers, reason=reason)
        try:
            item: M | None = spec.model.from_bytes(data)
        except ValueError:
            item = None
        await tell(spec, on_dead, item, reason, (raw.headers or {}).get("Nats-Msg-Id", ""))
        with contextlib.suppress(js_errors.Error):
            await bus.js.delete_msg(spec.stream.name, seq)

    return await bus.nc.subscribe(spec.max_deliveries_advisory, queue=spec.durable, cb=on_advisory)


OBSERVE_EVERY_S = 5.0


@contextlib.asynccontextmanager
async def backlog_watched(bus: Bus, spec: subjects.ConsumerSpec[M]) -> AsyncIterator[None]:
    """While the block runs: the consumer's backlog (pending, ack pending) as gauges, looked at once
    and then every `OBSERVE_EVERY_S`, in a task of its own. Under load JetStream's API may take its
    whole timeout to answer (10 s at 100 000 machines): a slow look delays the next look, never a
    message. A failed look is skipped (the next one tries again)."""

    async def watch() -> None:
        while True:
            try:
                info = await bus.js.consumer_info(spec.stream.name, spec.durable)
            except Exception as exc:
                log.debug("%s: consumer info not read: %s", spec.durable, exc)
            else:
                metrics.CONSUMER_PENDING.labels(spec.durable).set(info.num_pending or 0)
                metrics.CONSUMER_ACK_PENDING.labels(spec.durable).set(info.num_ack_pending or 0)
            await asyncio.sleep(OBSERVE_EVERY_S)

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def consume(
    bus: Bus,
    spec: subjects.ConsumerSpec[M],
    handler: Handler[M],
    stop: asyncio.Event,
    *,
    on_dead: OnDead[M] | None = None,
    batch: int | None = None,
) -> None:
    """Run one consumer of `spec` until `stop` is set (a supervised loop of `run_service`)."""
    await Consumer(bus, spec, handler, on_dead).run(stop, batch)


async def subscribe(
    bus: Bus, spec: subjects.ConsumerSpec[M], batch: int | None = None
) -> JetStreamContext.PullSubscription:
    """The spec's pull subscription, shared by every replica."""
    await declare(bus, spec, batch)
    return await bus.js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream.name)


async def declare(bus: Bus, spec: subjects.ConsumerSpec[M], batch: int | None = None) -> None:
    """Create the spec's durable consumer, or bring an existing one to the spec."""
    size = batch or spec.batch
    metrics.CONSUMER_REDELIVERED.labels(spec.durable)  # the series exists (at 0) from the start
    config = js_api.ConsumerConfig(
        durable_name=spec.durable,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait_s,
        max_deliver=spec.max_deliver,
        max_ack_pending=max(size * 4, spec.max_ack_pending),
        filter_subject=spec.subject,
    )
    # Creating a durable that exists updates it, so a changed spec (a bounded max_deliver, a new ack
    # wait) reaches consumers created by an older version too.
    try:
        await bus.js.add_consumer(spec.stream.name, config)
    except js_errors.APIError as exc:
        log.warning("%s: consumer settings not updated (%s); using it as it is", spec.durable, exc)


STATUS = js_api.Header.STATUS.value
HEARTBEAT = js_api.StatusCode.CONTROL_MESSAGE.value
# A pull's messages together stay under this many bytes: well below what nats-server lets wait for
# one client (`max_pending`, 64 MiB by default). A pull bounded by count alone, of messages larger
# than expected, passed it: the server cut the connection as a slow consumer, and the messages
# under way came back only after their ack wait.
PULL_MAX_BYTES = 16 * 2**20


class Puller:
    """A durable consumer's messages, pulled over a plain subscription on an inbox of its own.

    For consumers that take whole batches (metering): nats-py's `fetch` makes a task, a uuid and a
    timeout for every message it returns, which is a large share of a small message's cost. Here
    a message costs an append. One pull request is open at a time; each has its own reply subject,
    so a late end-of-request status of an earlier one cannot end the current one early. A pull is
    bounded in bytes too (`max_bytes`); `capped` says the last one ended there, with more to come.
    """

    def __init__(self, bus: Bus, spec: subjects.ConsumerSpec[M], max_bytes: int = PULL_MAX_BYTES) -> None:
        self.bus = bus
        self.spec = spec
        self.max_bytes = max_bytes
        self.capped = False
        self.inbox = bus.nc.new_inbox()
        self.next_subject = f"{bus.api_prefix}.CONSUMER.MSG.NEXT.{spec.stream.name}.{spec.durable}"
        self.got: list[Msg] = []
        self.want = 0
        self.request = ""  # the reply subject of the open request
        self.requests = 0
        self.ended = asyncio.Event()
        self.sub: Subscription | None = None

    async def start(self) -> None:
        self.sub = await self.bus.nc.subscribe(f"{self.inbox}.*", cb=self.arrived)

    async def stop(self) -> None:
        if self.sub is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await self.sub.unsubscribe()

    async def arrived(self, msg: Msg) -> None:
        headers = msg.headers
        if headers is None or STATUS not in headers:
            self.got.append(msg)
            if len(self.got) >= self.want:
                self.ended.set()
        elif msg.subject == self.request and headers[STATUS] != HEARTBEAT:
            # 404/408: nothing more before it expired; 409: ended by the server (at `max_bytes`,
            # with the next message waiting: "Message Size Exceeds MaxBytes")
            self.capped = "MaxBytes" in headers.get(js_api.Header.DESCRIPTION, "")
            self.ended.set()

    async def pull(self, batch: int, timeout: float, *, held: bool = True) -> list[Msg]:
        """Up to `batch` messages: once that many came, or the request expired after `timeout`
        seconds with fewer (none while the connection is down: backed off half a second).

        Not `held`: as soon as the stream has no more for the consumer (JetStream's `no_wait` with
        an expiry), so a backlog's last messages do not wait out the expiry; `timeout` then bounds
        only the wait for a first message.
        """
        self.capped = False
        if len(self.got) < batch:  # messages of an earlier request may have come late
            self.requests += 1
            self.request = f"{self.inbox}.{self.requests}"
            self.want = batch
            self.ended.clear()
            body: dict[str, int | bool] = {
                "batch": batch - len(self.got),
                "expires": int(timeout * 1e9),
                # never under one message's largest size: such a message would end every pull
                "max_bytes": max(self.max_bytes, self.bus.nc.max_payload),
            }
            if not held:
                body["no_wait"] = True
            try:
                await self.bus.nc.publish(self.next_subject, json.dumps(body).encode(), self.request)
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
                await asyncio.sleep(0.5)
                return []
            # The server ends the request itself; the margin covers a lost connection.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ended.wait(), timeout + 1.0)
        got, self.got = self.got[:batch], self.got[batch:]
        return got


def deliveries(msg: Msg) -> int:
    """How many times JetStream delivered this message, read from its ack subject alone
    (nats-py's `msg.metadata` builds several objects and a datetime every time it is read)."""
    tokens = (msg.reply or "").split(".")
    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>, or
    # the newer form with the domain and the account hash before the stream (12 tokens or more).
    if len(tokens) == 9:
        return int(tokens[4])
    return int(tokens[6]) if len(tokens) >= 12 else 1


async def fetch(
    sub: JetStreamContext.PullSubscription, batch: int, durable: str, timeout: float = 1.0
) -> list[Msg]:
    """The next messages, or none after a transient failure (logged, backed off)."""
    try:
        return await sub.fetch(batch, timeout=timeout)
    except TimeoutError:  # nats.errors.TimeoutError or, from fetch, a bare asyncio one
        return []
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
        await asyncio.sleep(0.5)
    except js_errors.APIError as exc:
        log.warning("%s: fetch failed: %s", durable, exc)
        await asyncio.sleep(0.5)
    return []


async def dead_letter(
    bus: Bus,
    spec: subjects.ConsumerSpec[M],
    *,
    subject: str,
    data: bytes,
    headers: dict[str, str] | None,
    reason: str,
    metadata: Msg.Metadata | None = None,
) -> None:
    """Copy a message to `TY_DEAD` with its headers and the reason (logged either way)."""
    log.error("%s: dead-lettered %s: %s", spec.durable, subject, reason)
    letter = DeadLetter(
        durable=spec.durable,
        stream=spec.stream.name,
        subject=subject,
        stream_seq=metadata.sequence.stream if metadata else 0,
        deliveries=metadata.num_delivered or 0 if metadata else 0,
        reason=reason[:2000],
        headers=dict(headers or {}),
        data_b64=base64.b64encode(data[: subjects.DEAD_MAX_DATA]).decode(),
        truncated=len(data) > subjects.DEAD_MAX_DATA,
        dead_at=timefmt.now(),
    )
    try:
        await bus.publish(subjects.dead(spec.durable), letter)
    except Exception:
        log.exception("%s: could not park a dead letter", spec.durable)


@contextlib.asynccontextmanager
async def in_progress(msg: Msg, every: float = 10.0) -> AsyncIterator[None]:
    """Keep a long handler's message ours: tell JetStream it is in progress every `every` seconds
    (well under the consumer's ack wait), until the block ends."""

    async def keep() -> None:
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    keeper = asyncio.create_task(keep())
    try:
        yield
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper


@contextlib.asynccontextmanager
async def reading(
    bus: Bus, stream: str, config: js_api.ConsumerConfig
) -> AsyncIterator[JetStreamContext.PullSubscription]:
    """A pull subscription of a short-lived reader on `stream` (`config` names its filter and where it
    starts): nothing to acknowledge, held in memory, gone when left (or 30 s after a lost client)."""
    config.ack_policy = js_api.AckPolicy.NONE
    config.mem_storage = True
    config.inactive_threshold = 30.0
    sub = await bus.js.pull_subscribe(config.filter_subject or "", stream=stream, config=config)
    try:
        yield sub
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def observe_wait(spec: subjects.ConsumerSpec[M], item: M) -> None:
    """An item's time in its stream, from when it was sent (`spec.sent_at`: a command's acceptance,
    a report's making) to its first delivery's handling (`tingyu_command_wait_seconds`): what a
    job waits before any work on it starts. Items of a spec without `sent_at` are not counted."""
    if spec.sent_at is not None:
        waited = max(timefmt.now() - spec.sent_at(item), 0.0)
        metrics.COMMAND_WAIT.labels(spec.durable).observe(waited)


LISTING_RETRY_DELAYS_S = (0.1, 0.2, 0.4, 0.8)  # then one last pull, whose 503 is raised


async def fetch_listed(sub: JetStreamContext.PullSubscription, batch: int, timeout: float) -> list[Msg]:
    """The next messages of a short-lived reader's fresh consumer. On a cluster, the server the
    client talks to may not yet know of a consumer just made on another server, and answers the
    first pulls with 503 (no responders): those are tried again, a little later each time."""
    for delay in LISTING_RETRY_DELAYS_S:
        try:
            return await sub.fetch(batch, timeout=timeout)
        except js_errors.ServiceUnavailableError:
            await asyncio.sleep(delay)
    return await sub.fetch(batch, timeout=timeout)
