"""The launcher opens nats-server's monitoring endpoint only when asked (benchmarks look inside the
server with it), and only on the loopback address."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.support import trusted
from tingyu.cli.launcher import Platform, PlatformConfig, free_port


def started(state_dir: Path, monitor_port: int) -> Platform:
    config = PlatformConfig(
        state_dir=state_dir,
        nats_port=free_port(),
        nats_monitor_port=monitor_port,
        colour=False,
        log_file=state_dir / "nats.log",
    )
    platform = Platform(trusted(config))
    platform.start_nats()
    return platform


def test_the_monitoring_endpoint_answers_on_loopback_when_asked(tmp_path: Path) -> None:
    port = free_port()
    platform = started(tmp_path, port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/jsz", timeout=5) as answer:
            assert "server_id" in json.loads(answer.read())
        assert f"http: 127.0.0.1:{port}" in (tmp_path / "nats" / "nats-server.conf").read_text()
    finally:
        platform.stop()


def test_no_monitoring_endpoint_unless_asked(tmp_path: Path) -> None:
    platform = started(tmp_path, 0)
    try:
        assert "http:" not in (tmp_path / "nats" / "nats-server.conf").read_text()
    finally:
        platform.stop()
