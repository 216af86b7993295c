"""The Docker Engine a launcher starts when none runs: started clean, stopped without leftovers.

dockerd starts its own containerd and writes its pid to `/var/run/docker/containerd/containerd.pid`.
When dockerd is killed, that containerd can outlive it (or linger as a process not yet reaped); the
next dockerd then finds the pid "still running", waits on a socket nobody answers and gives up
("timeout waiting for containerd to start"). So a stop lets dockerd stop its containers (it allows
them 15 s) and end its containerd itself, and a start first ends a containerd that no dockerd owns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

CONTAINERD_PID = Path("/var/run/docker/containerd/containerd.pid")

STOP_GRACE_S = 60.0
"""How long a stopping dockerd may take: its containers get 15 s, then it ends containerd."""

START_TIMEOUT_S = 180.0
"""How long a starting dockerd may take to answer: it first cleans up after the containers of its
last run, several seconds per hundred containers."""


def _stat(pid: int | str) -> tuple[str, int] | None:
    """(command name, process group) of a live process; None when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    state, _ppid, pgrp = raw[raw.rindex(")") + 2 :].split()[:3]
    return None if state in "ZX" else (name, int(pgrp))


def _processes() -> list[tuple[int, str, int]]:
    """(pid, command name, process group) of every live process on this machine."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(entry.name)) is not None:
            found.append((int(entry.name), *stat))
    return found


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    return _stat(pid) is not None


def dockerd_pids() -> list[int]:
    """Every live dockerd on this machine."""
    return [pid for pid, name, _ in _processes() if name == "dockerd"]


def end_orphan_containerd(pid_file: Path = CONTAINERD_PID, timeout: float = 30.0) -> str:
    """End the containerd a killed dockerd left behind, and its pid file; say what was done.

    Called only when no dockerd runs: a containerd under /var/run/docker then serves nobody."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return ""
    stat = _stat(pid)
    if stat is not None and stat[0] == "containerd":
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 10)
        done = f"ended containerd {pid}, left by a dockerd that is gone"
    else:  # gone, a zombie not yet reaped, or the pid now names another process
        done = f"removed the stale {pid_file}"
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()
    return done


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until the process is gone or a zombie; True when it is."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def group_alive(pgid: int) -> bool:
    """Some live (not zombie) process is still in the process group."""
    return any(group == pgid for _, _, group in _processes())
