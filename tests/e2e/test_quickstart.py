"""The README's first deployment, run verbatim against `tingyu up` on an empty state directory, with
authentication on (the block reads the admin token `tingyu up` wrote)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker

from tests.support import remove_agent_containers
from tingyu.cli.launcher import free_port

ROOT = Path(__file__).resolve().parents[2]
TINGYU = Path(sys.executable).parent / "tingyu"


def quickstart(api_port: int) -> str:
    """The shell block between the README's quickstart markers, pointed at this platform's port."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- quickstart -->\s*```sh\n(.*?)```\s*<!-- /quickstart -->", readme, re.S)
    assert block is not None, "the README lost its quickstart block"
    return block.group(1).replace("localhost:8080", f"localhost:{api_port}")


def follow(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line)


def wait_for(lines: queue.Queue[str], text: str, seen: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in seen):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"`tingyu up` never printed {text!r}; last lines:\n{''.join(seen[-40:])}"
        try:
            seen.append(lines.get(timeout=min(remaining, 1.0)))
        except queue.Empty:
            continue


def test_the_readme_first_deployment_works_as_written(tmp_path: Path) -> None:
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINGYU_")}
    argv = [str(TINGYU), "up", "--state-dir", str(tmp_path / "var"), "--api-port", str(api_port)]
    argv += ["--nats-port", str(free_port()), "--registry-port", str(free_port())]
    argv += ["--metrics-port-base", "0"]  # the fixed metrics ports may be another platform's
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=follow, args=(proc, lines), daemon=True).start()
    try:
        wait_for(lines, "this machine is Ready", seen, timeout=180)
        log = "".join(seen)
        assert "WARNING: TINGYU_AGENT_AREA/TINGYU_AGENT_OPERATOR are not set" in log  # loud default
        assert "demo image demo:1 was built here and put into the catalog" in log

        # Run where `make up` keeps its state (`var/` under the folder), as a newcomer would: the
        # block reads the admin token from var/api/admin.token and sends it with every call.
        assert (tmp_path / "var" / "api" / "admin.token").is_file()
        ran = subprocess.run(
            ["bash", "-c", quickstart(api_port)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr
        out = ran.stdout
        assert '"state":3' in out, out
        assert '"podstate":"Running"' in out, out
        assert '"deploymentname":"demo1","message":"success"' in out, out
        client = docker.from_env(timeout=60)
        try:

            def gone() -> bool:
                return not client.containers.list(all=True, filters={"name": "^demo1$"})

            deadline = time.monotonic() + 60
            while not gone():
                assert time.monotonic() < deadline, "the README's delete did not remove demo1"
                time.sleep(0.5)
        finally:
            client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        remove_agent_containers(tmp_path / "var" / "agent" / "identity.json")
