"""`tingyu up`: the whole platform on this machine, embedded defaults, state under ./var."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from tingyu.cli.launcher import ADMIN_TOKEN_ENV, SERVICES, Platform, PlatformConfig, build_console
from tingyu.common.service import EXIT_BUS_LOST


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
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
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
        while not stopping.wait(1.0):
            for name, proc in list(platform.procs.items()):
                code = proc.popen.poll()
                if code == EXIT_BUS_LOST:  # its NATS connection closed for good: a fresh process
                    print(f"{name} lost its NATS connection; starting it again", flush=True)
                    platform.restart(name)
                elif code is not None:
                    print(f"{name} exited with {code}; stopping the platform", flush=True)
                    stopping.set()
    finally:
        print("stopping…", flush=True)
        platform.stop()
    return 0


def metrics_ports(base: int) -> dict[str, int]:
    """Fixed metrics ports for a scrape config (deploy/prometheus): base+1 … in SERVICES order."""
    services = [name for name in SERVICES if name != "api"]
    return {name: base + i if base else 0 for i, name in enumerate(services, start=1)}
