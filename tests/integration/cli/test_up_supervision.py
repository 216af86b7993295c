"""`tingyu up` as an operator runs it: a service killed -9 is started again and the restart logged;
SIGTERM to its process group stops the supervisor and every process under it, restarting nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support import TEST_POLICY, eventually
from tingyu.cli.launcher import free_port

pytestmark = pytest.mark.faults


def service_pids(up: psutil.Process, service: str) -> list[int]:
    return [
        child.pid
        for child in up.children(recursive=True)
        if f"tingyu.{service}.main" in " ".join(child.cmdline())
    ]


async def test_up_restarts_a_killed_service_and_stops_everything_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    argv = [sys.executable, "-m", "tingyu.cli.main", "up", "--state-dir", str(tmp_path / "var")]
    argv += ["--api-port", str(free_port()), "--nats-port", str(free_port())]
    argv += ["--registry-port", str(free_port()), "--metrics-port-base", "0", "--no-demo"]
    env = {**os.environ, **TEST_POLICY, "TINGYU_LOG_LEVEL": "WARNING"}
    with log.open("wb") as out:
        up = await asyncio.create_subprocess_exec(
            *argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:

        async def said(text: str) -> bool:
            return text in log.read_text(errors="replace")

        # Supervision starts once `up` has said whether this machine is Ready (its last start step).
        await eventually(lambda: said("this machine is"), timeout=180)
        parent = psutil.Process(up.pid)
        [imager] = service_pids(parent, "imager")
        os.kill(imager, signal.SIGKILL)
        await eventually(lambda: said("supervisor: imager was killed by signal 9"), timeout=20)
        await eventually(lambda: said("supervisor: imager started again (restart 1)"), timeout=20)

        async def new_imager() -> list[int]:
            return [pid for pid in service_pids(parent, "imager") if pid != imager]

        await eventually(new_imager, timeout=20)
        everything = [child.pid for child in parent.children(recursive=True)]
        assert len(everything) >= 8  # nats, registry, six services

        os.killpg(up.pid, signal.SIGTERM)  # as a terminal or an init system stops the group
        assert await asyncio.wait_for(up.wait(), 120) == 0  # dockerd may take a minute

        def gone(pid: int) -> bool:
            try:
                return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        left = [pid for pid in everything if not gone(pid)]
        assert not left, [psutil.Process(pid).cmdline() for pid in left]
        text = log.read_text(errors="replace")
        assert "stopping…" in text
        assert "started again" not in text.split("stopping…", 1)[1]
    finally:
        if up.returncode is None:
            os.killpg(up.pid, signal.SIGKILL)
            await up.wait()
