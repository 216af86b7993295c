"""`tingyu up`: the whole platform on this machine, embedded defaults, state under ./var.

Every process is supervised (`supervisor.py`): one that exits is started again with back-off.
Ctrl-C or SIGTERM stops the supervisor first, then every process; nothing restarts meanwhile.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from tingyu.cli.launcher import ADMIN_TOKEN_ENV, SERVICES, Platform, PlatformConfig, build_console
from tingyu.cli.supervisor import Supervisor


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("up", help="run NATS, the registry, every service and one agent here")
    parser.add_argument("--state-dir", type=Path, default=Path("./var"))
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument("--nats-port", type=int, default=4222)
    parser.add_argument("--registry-port", type=int, default=5000)
    parser.add_argument(
        "--metrics-port-base", type=int, default=9100, help="services' metrics ports: base+1 … (0: off)"
    )
    parser.set_defaults(func=up)


def admin_token_hint(config: PlatformConfig) -> str:
    """Where the bootstrap admin token is (never the token itself)."""
    if ADMIN_TOKEN_ENV in os.environ:
        return f"Admin token: the value of {ADMIN_TOKEN_ENV}."
    return (
        f"Admin token: {config.admin_token_file} (mode 0600); "
        f"export TINGYU_TOKEN=$(cat {config.admin_token_file}) for the tingyu command."
    )


def up(args: argparse.Namespace) -> int:
    config = PlatformConfig(
        state_dir=args.state_dir.resolve(),
        nats_port=args.nats_port,
        registry_port=args.registry_port,
        api_port=args.api_port,
        metrics_ports=metrics_ports(args.metrics_port_base),
    )
    print(build_console(), flush=True)
    platform = Platform(config)
    stopping = threading.Event()
    starting = threading.Event()
    starting.set()

    def on_signal(*_: object) -> None:
        stopping.set()
        if starting.is_set():
            starting.clear()
            raise KeyboardInterrupt  # still starting: abandon the start, stop what runs

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        platform.start_all()
        print(
            f"Tingyu is up: API {config.api_url} (docs {config.api_url}/docs, "
            f"console {config.api_url}/console/); Ctrl-C stops it.\n"
            f"NATS (TLS, CA {config.tls_files()[0]}) credentials: {config.auth.root}/users; "
            "new machines: `tingyu node enroll-token` (docs/security.md)",
            flush=True,
        )
        print(admin_token_hint(config), flush=True)
        starting.clear()
        Supervisor(platform, stopping).run()
    except KeyboardInterrupt:
        pass
    finally:
        starting.clear()
        stopping.set()
        print("stopping…", flush=True)
        platform.stop()
    return 0


def metrics_ports(base: int) -> dict[str, int]:
    """Fixed metrics ports for a scrape config (deploy/prometheus): base+1 … in SERVICES order."""
    services = [name for name in SERVICES if name != "api"]
    return {name: base + i if base else 0 for i, name in enumerate(services, start=1)}
