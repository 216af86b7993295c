"""What `tingyu up` does while the platform runs: a process that exits is started again, with back-off.

Any exit that was not asked for — a crash, a kill -9, exit code 3 after a lost NATS connection, even
exit 0 — is logged and restarted after a delay that doubles from `first_s` to `most_s`; a process
that has then run for `stable_s` starts again from `first_s`. Nothing is restarted once the
platform is stopping. The rules (`Backoff`) take the clock as an argument, so they are unit tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tingyu.cli.launcher import Platform
from tingyu.common.service import EXIT_BUS_LOST


@dataclass
class Backoff:
    """The delay before the next restart of one process."""

    first_s: float = 1.0
    most_s: float = 30.0
    stable_s: float = 60.0  # a run this long counts as healthy: the next delay starts from first_s
    next_s: float = 0.0
    restarts: int = 0

    def __post_init__(self) -> None:
        self.next_s = self.first_s

    def delay(self, ran_s: float) -> float:
        """The wait before restarting a process that ran `ran_s` seconds before it exited."""
        if ran_s >= self.stable_s:
            self.next_s = self.first_s
        delay = self.next_s
        self.next_s = min(self.most_s, self.next_s * 2)
        self.restarts += 1
        return delay


def why(code: int) -> str:
    """How an exit code reads in the log."""
    if code == EXIT_BUS_LOST:
        return "lost its NATS connection (exit code 3)"
    if code < 0:
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Supervisor:
    """Watches a platform's processes from the launcher's main thread; `tick()` does one round."""

    platform: Platform
    stopping: threading.Event
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    clock: Callable[[], float] = time.monotonic
    backoff: dict[str, Backoff] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)  # name -> when it starts again

    def tick(self) -> None:
        """Notice exits, start again what is due; never while stopping."""
        now = self.clock()
        for name, proc in list(self.platform.procs.items()):
            if self.stopping.is_set():
                return
            self.started.setdefault(name, now)
            code = proc.popen.poll()
            if code is None or name in self.due:
                continue
            ran = now - self.started[name]
            delay = self.backoff.setdefault(name, Backoff()).delay(ran)
            self.due[name] = now + delay
            self.log(f"supervisor: {name} {why(code)} after {ran:.0f}s; restarting in {delay:g}s")
        for name, when in sorted(self.due.items(), key=lambda item: item[1]):
            if self.stopping.is_set() or when > now:
                continue
            del self.due[name]
            self.platform.restart(name)
            self.started[name] = self.clock()
            count = self.backoff[name].restarts
            self.log(f"supervisor: {name} started again (restart {count})")

    def run(self, every_s: float = 0.5) -> None:
        """Tick until the platform is stopping."""
        while not self.stopping.wait(every_s):
            self.tick()
