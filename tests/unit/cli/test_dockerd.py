"""Starting and stopping the Docker Engine a launcher owns: nothing of a stopped one is left for the
next start to trip over (its containerd, or a stale pid file naming it)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tingyu.cli import dockerd
from tingyu.cli.launcher import Platform, PlatformConfig


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    platform = Platform(PlatformConfig(state_dir=tmp_path, colour=False, log_file=tmp_path / "log"))
    yield platform
    platform.stop()


def a_containerd(tmp_path: Path) -> subprocess.Popen[bytes]:
    """A process the kernel names `containerd`, as a dockerd that was killed leaves one behind."""
    binary = tmp_path / "containerd"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", binary)
    return subprocess.Popen([str(binary), "1000"], start_new_session=True)


def test_a_containerd_no_dockerd_owns_is_ended_and_its_pid_file_removed(tmp_path: Path) -> None:
    orphan = a_containerd(tmp_path)
    pid_file = tmp_path / "containerd.pid"
    pid_file.write_text(str(orphan.pid))

    said = dockerd.end_orphan_containerd(pid_file)

    assert orphan.wait(timeout=5) is not None
    assert said == f"ended containerd {orphan.pid}, left by a dockerd that is gone"
    assert not pid_file.exists()


def test_a_pid_file_naming_a_gone_or_other_process_is_removed_and_that_process_left_alone(
    tmp_path: Path,
) -> None:
    other = subprocess.Popen(["sleep", "1000"])
    pid_file = tmp_path / "containerd.pid"
    try:
        for pid in (other.pid, 4_000_000):  # another program's pid; a pid nobody has
            pid_file.write_text(str(pid))
            assert dockerd.end_orphan_containerd(pid_file) == f"removed the stale {pid_file}"
            assert not pid_file.exists()
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
    assert dockerd.end_orphan_containerd(pid_file) == ""  # no file: nothing to do


def test_dockerd_alone_is_signalled_and_what_it_started_in_its_group_is_ended_after_it(
    platform: Platform,
) -> None:
    # A dockerd stand-in that exits on SIGTERM and leaves a child in its process group, as a
    # dockerd killed before it ended its containerd would.
    platform.spawn("dockerd", ["sh", "-c", "sleep 1000 & echo $!; wait"])
    deadline = time.monotonic() + 10
    while not platform.procs["dockerd"].tail and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(platform.procs["dockerd"].tail[0])
    group = platform.procs["dockerd"].popen.pid
    assert dockerd.alive(child)

    platform.stop()

    assert not dockerd.alive(child)
    assert not dockerd.group_alive(group)
