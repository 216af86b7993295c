"""`tingyu up`'s supervisor: back-off rules, and restarts of real child processes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tingyu.cli.launcher import Platform, PlatformConfig
from tingyu.cli.supervisor import Backoff, Supervisor


def test_the_delay_doubles_up_to_the_most_and_starts_again_after_a_stable_run() -> None:
    backoff = Backoff(first_s=1, most_s=30, stable_s=60)
    assert [backoff.delay(ran_s=2) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.delay(ran_s=61) == 1
    assert backoff.delay(ran_s=1) == 2
    assert backoff.restarts == 9


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    platform = Platform(PlatformConfig(state_dir=tmp_path, colour=False, log_file=tmp_path / "log"))
    yield platform  # type: ignore[misc]
    platform.stop()


def wait_exit(platform: Platform, name: str) -> int:
    code = platform.procs[name].popen.wait(timeout=10)
    assert code is not None
    return code


def test_an_exited_process_is_started_again_after_its_delay_and_each_restart_is_logged(
    platform: Platform,
) -> None:
    platform.spawn("crasher", ["sh", "-c", "exit 3"])
    lines: list[str] = []
    clock = Clock()
    supervisor = Supervisor(platform, threading.Event(), log=lines.append, clock=clock)
    first = platform.procs["crasher"].popen.pid
    assert wait_exit(platform, "crasher") == 3

    supervisor.tick()
    assert lines == ["supervisor: crasher lost its NATS connection (exit code 3) after 0s; restarting in 1s"]
    assert platform.procs["crasher"].popen.pid == first  # not before its delay
    clock.now += 1
    supervisor.tick()
    assert platform.procs["crasher"].popen.pid != first
    assert lines[-1] == "supervisor: crasher started again (restart 1)"

    assert wait_exit(platform, "crasher") == 3
    supervisor.tick()
    assert lines[-1].endswith("restarting in 2s")  # it failed again at once: a longer wait


def test_a_killed_or_cleanly_exited_process_is_restarted_too(platform: Platform) -> None:
    platform.spawn("sleeper", ["sleep", "60"])
    lines: list[str] = []
    clock = Clock()
    supervisor = Supervisor(platform, threading.Event(), log=lines.append, clock=clock)
    supervisor.tick()
    clock.now += 5
    platform.spawn("quitter", ["true"])
    platform.procs["sleeper"].popen.kill()
    wait_exit(platform, "sleeper")
    wait_exit(platform, "quitter")
    supervisor.tick()
    assert sorted(lines) == [
        "supervisor: quitter exited with code 0 after 0s; restarting in 1s",
        "supervisor: sleeper was killed by signal 9 after 5s; restarting in 1s",
    ]
    clock.now += 1
    supervisor.tick()
    assert platform.procs["sleeper"].popen.poll() is None


def test_nothing_is_restarted_while_stopping(platform: Platform) -> None:
    platform.spawn("crasher", ["sh", "-c", "exit 1"])
    stopping = threading.Event()
    lines: list[str] = []
    clock = Clock()
    supervisor = Supervisor(platform, stopping, log=lines.append, clock=clock)
    first = platform.procs["crasher"].popen.pid
    wait_exit(platform, "crasher")
    supervisor.tick()
    stopping.set()
    clock.now += 60
    started = time.monotonic()
    supervisor.run(every_s=0.01)  # returns at once: the platform is stopping
    assert time.monotonic() - started < 1
    supervisor.tick()
    assert platform.procs["crasher"].popen.pid == first
    assert len(lines) == 1
