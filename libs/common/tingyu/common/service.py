"""One skeleton for every service: resources on an exit stack, supervised loops in a task group.

A service's `main.py` is a `setup(service)` that opens its resources (closed in reverse order at
stop) and declares its loops; `run_service` runs them until SIGINT/SIGTERM:
- a loop that raises is logged and restarted with back-off; one that returns early is restarted too;
- a leader loop runs its tick only while this replica holds the named lease;
- a NATS connection that nats-py closed for good stops the service with exit code 3, so that its
  supervisor (`tingyu up`, systemd) starts a fresh process instead of leaving a useless one alive;
- a setting out of its range stops it at start with exit code 2 and one line per refused setting;
- the records a platform service logs while working on a job go to TY_JOBLOG over its first
  connection (`joblog`); the edge agent's skeleton is made with `job_logs=False`.
Stopping: the stop event is set, loops finish (or are cancelled after a grace), then resources close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError

from tingyu.common import joblog, logs, metrics
from tingyu.common.bus import Bus, consume, serve_by_subject
from tingyu.common.bus.consumers import Handler, OnDead
from tingyu.common.bus.responders import ignoring_subject
from tingyu.common.leases import Lease
from tingyu.common.models.base import Message
from tingyu.common.settings import PlatformSettings, get_platform_settings
from tingyu.common.subjects import ConsumerSpec

log = logging.getLogger(__name__)

EXIT_BUS_LOST = 3
EXIT_BAD_SETTINGS = 2
STOP_GRACE_S = 10.0
MAX_BACKOFF_S = 30.0

LoopFn = Callable[[asyncio.Event], Awaitable[None]]
M = TypeVar("M", bound=Message)
Req = TypeVar("Req", bound=Message)


def setup_logging(name: str, level: str = "INFO") -> None:
    """One line per record, prefixed with the service name (the launcher adds colour per service),
    or one JSON object per line with `TINGYU_LOG_FORMAT=json`."""
    logs.configure(name, level, get_platform_settings().log_format)


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` unless `stop` is set first; True when stopping."""
    if stop.is_set():  # wait_for with no time left gives up before the wait could see the event
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


@dataclass(frozen=True)
class Loop:
    """A named loop that runs until the stop event is set."""

    name: str
    run: LoopFn


class Service:
    """What a service's setup declares: its resources (an exit stack) and its loops."""

    def __init__(self, name: str, *, job_logs: bool = True) -> None:
        self.name = name
        self.job_logs = job_logs
        self.stop = asyncio.Event()
        self.stack = contextlib.AsyncExitStack()
        self.loops: list[Loop] = []
        self.buses: list[Bus] = []
        self.exit_code = 0

    async def connect(self, settings: PlatformSettings, *, ensure: bool = True, attempts: int = 60) -> Bus:
        """The service's NATS connection, drained and closed at stop, watched while running."""
        bus = await Bus.connect(settings, f"tingyu-{self.name}", ensure=ensure, attempts=attempts)
        self.stack.push_async_callback(bus.close)
        if self.job_logs and not self.buses:  # stops sending before its connection drains
            await self.stack.enter_async_context(joblog.forwarding(self.name, bus))
        self.buses.append(bus)
        return bus

    def metrics(self, port: int, host: str | None = None) -> None:
        """Expose this process's Prometheus metrics on `port` (0 = off); the host is the platform's
        `TINGYU_METRICS_HOST` unless given."""
        metrics.serve(port, host or get_platform_settings().metrics_host)

    def loop(self, name: str, run: LoopFn) -> None:
        self.loops.append(Loop(name, run))

    def consume(
        self,
        bus: Bus,
        spec: ConsumerSpec[M],
        handler: Handler[M],
        *,
        on_dead: OnDead[M] | None = None,
        batch: int | None = None,
    ) -> None:
        """A durable consumer of `spec` as a supervised loop named after it."""
        self.loop(spec.durable, lambda stop: consume(bus, spec, handler, stop, on_dead=on_dead, batch=batch))

    async def serve(
        self,
        bus: Bus,
        subject: str,
        request: type[Req],
        handler: Callable[[Req], Awaitable[Message]],
        *,
        queue: str = "",
    ) -> None:
        """A request/reply responder, closed at stop before the connection drains."""
        await self.serve_by_subject(bus, subject, request, ignoring_subject(handler), queue=queue)

    async def serve_by_subject(
        self,
        bus: Bus,
        subjects: str,
        request: type[Req],
        handler: Callable[[str, Req], Awaitable[Message]],
        *,
        queue: str = "",
        expires_s: float = 0.0,
    ) -> None:
        """A responder on every subject `subjects` matches, told which one each request came on;
        closed at stop before the connection drains (`expires_s`: see `Responder`)."""
        responder = await serve_by_subject(bus, subjects, request, handler, queue=queue, expires_s=expires_s)
        self.stack.push_async_callback(responder.close)

    def leader(self, lease: Lease, every_s: float, tick: Callable[[], Awaitable[None]]) -> None:
        """Run `tick` every `every_s` seconds while this replica holds `lease`."""

        async def lead(stop: asyncio.Event) -> None:
            leading = False
            while not await wait_or_stop(stop, every_s):
                try:
                    held = await lease.hold()
                    if held and not leading:
                        log.info("%s leads the %s", lease.holder, lease.name)
                    leading = held
                    if held:
                        await tick()
                except Exception:
                    log.exception("%s: leader tick failed; trying again next tick", lease.name)

        self.loop(lease.name, lead)

    async def run(self) -> int:
        """Run every loop until stopped; the exit code says whether the stop was asked for."""
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._supervise(loop)) for loop in self.loops]
            group.create_task(self._watch_buses())
            await self.stop.wait()
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S) if tasks else (set(), set())
            for task in pending:
                log.warning("%s: a loop did not stop within %.0fs; cancelled", self.name, STOP_GRACE_S)
                task.cancel()
        return self.exit_code

    async def _supervise(self, loop: Loop) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                await loop.run(self.stop)
                failures = 0
                if not self.stop.is_set():
                    log.warning("%s: loop %s ended early; restarting", self.name, loop.name)
            except Exception:
                failures += 1
                log.exception("%s: loop %s failed (%d in a row); restarting", self.name, loop.name, failures)
            await wait_or_stop(self.stop, min(0.5 * 2 ** min(failures, 6), MAX_BACKOFF_S))

    async def _watch_buses(self) -> None:
        lost = [asyncio.create_task(bus.lost.wait()) for bus in self.buses]
        stopping = asyncio.create_task(self.stop.wait())
        await asyncio.wait([*lost, stopping], return_when=asyncio.FIRST_COMPLETED)
        for task in [*lost, stopping]:
            task.cancel()
        if not self.stop.is_set():
            log.critical("%s: NATS connection lost for good; exiting to be restarted", self.name)
            self.exit_code = EXIT_BUS_LOST
            self.stop.set()


def run_service(
    name: str, setup: Callable[[Service], Awaitable[None]], level: str = "INFO", *, job_logs: bool = True
) -> None:
    """Set up `name`, run its loops until SIGINT/SIGTERM (or a lost bus), close, exit with its code;
    `job_logs` forwards the records naming a job to TY_JOBLOG (the platform services, not agents)."""
    setup_logging(name, level)

    async def runner() -> int:
        service = Service(name, job_logs=job_logs)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop.set)
        async with service.stack:
            await setup(service)
            return await service.run()

    with settings_checked(name):
        code = asyncio.run(runner())
    if code:
        sys.exit(code)


@contextlib.contextmanager
def settings_checked(name: str) -> Iterator[None]:
    """Settings read inside are checked: one out of its range ends the process with exit code 2
    and one line per refused setting, never a stack trace. Other validation errors (a message, a
    stored record) are not settings and go on as they are."""
    try:
        yield
    except ValidationError as error:
        if not error.title.endswith("Settings"):  # every settings class is named …Settings
            raise
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"])
            got = f" (got {problem['input']!r})" if not isinstance(problem.get("input"), dict) else ""
            print(f"{name}: setting {where} of {error.title} refused: {problem['msg']}{got}", file=sys.stderr)
        sys.exit(EXIT_BAD_SETTINGS)
