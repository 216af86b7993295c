"""`tingyu up`: the whole platform on this machine, embedded defaults, state under ./var.

Once it runs, the demo image is in the catalog and this machine is Ready: the README's first
deployment works as written.

Every process is supervised (`supervisor.py`): one that exits is started again with back-off.
Ctrl-C or SIGTERM stops the supervisor first, then every process; nothing restarts meanwhile.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

import httpx

from tingyu.cli import demo
from tingyu.cli.client import auth_headers
from tingyu.cli.launcher import ADMIN_TOKEN_ENV, SERVICES, Platform, PlatformConfig, build_console
from tingyu.cli.supervisor import Supervisor
from tingyu.common.models.nodes import OPERATORS

DEFAULT_AREA = "本地"
DEFAULT_OPERATOR = "移动"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("up", help="run NATS, the registry, every service and one agent here")
    parser.add_argument("--state-dir", type=Path, default=Path("./var"))
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument("--nats-port", type=int, default=4222)
    parser.add_argument("--registry-port", type=int, default=5000)
    parser.add_argument(
        "--metrics-port-base", type=int, default=9100, help="services' metrics ports: base+1 … (0: off)"
    )
    parser.add_argument("--no-demo", action="store_true", help="do not put the demo image into the catalog")
    parser.set_defaults(func=up)


def say(text: str) -> None:
    print(f"[tingyu up] {text}", flush=True)


def admin_token_hint(config: PlatformConfig) -> str:
    """Where the bootstrap admin token is (never the token itself)."""
    if ADMIN_TOKEN_ENV in os.environ:
        return f"Admin token: the value of {ADMIN_TOKEN_ENV}."
    return (
        f"Admin token: {config.admin_token_file} (mode 0600); "
        f"export TINGYU_TOKEN=$(cat {config.admin_token_file}) for the tingyu command and curl."
    )


def area_and_operator() -> dict[str, str]:
    """This machine's area and ISP: from the environment, else asked (a terminal), else loud defaults."""
    area = os.environ.get("TINGYU_AGENT_AREA", "").strip()
    operator = os.environ.get("TINGYU_AGENT_OPERATOR", "").strip()
    if area and operator in OPERATORS:
        return {"TINGYU_AGENT_AREA": area, "TINGYU_AGENT_OPERATOR": operator}
    if sys.stdin.isatty():
        area = area or input(f"This machine's area (province or city) [{DEFAULT_AREA}]: ").strip()
        while operator not in OPERATORS:
            choices = "/".join(OPERATORS)
            operator = (
                input(f"This machine's ISP ({choices}) [{DEFAULT_OPERATOR}]: ").strip() or DEFAULT_OPERATOR
            )
    area = area or DEFAULT_AREA
    if operator not in OPERATORS:
        operator = DEFAULT_OPERATOR
    if not sys.stdin.isatty():
        say(
            f"WARNING: TINGYU_AGENT_AREA/TINGYU_AGENT_OPERATOR are not set; this machine reports "
            f"area {area!r} and ISP {operator!r}. Rollouts target machines by area and ISP: to change "
            f"them, stop (Ctrl-C) and run `TINGYU_AGENT_AREA=江苏 TINGYU_AGENT_OPERATOR=电信 make up`."
        )
    return {"TINGYU_AGENT_AREA": area, "TINGYU_AGENT_OPERATOR": operator}


def wait_ready(api_url: str, token: str, timeout_s: float = 60.0) -> str:
    """The uuid of this machine once /node/list shows it Ready ('' if it did not in time)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=api_url, headers=auth_headers(token), timeout=10.0) as client:
        while time.monotonic() < deadline:
            nodes = client.get("/node/list").json().get("data") or []
            ready = [n for n in nodes if n.get("status") == "Ready" and not n.get("simulated")]
            if ready:
                return str(ready[0]["uuid"])
            time.sleep(0.5)
    return ""


def up(args: argparse.Namespace) -> int:
    config = PlatformConfig(
        state_dir=args.state_dir.resolve(),
        nats_port=args.nats_port,
        registry_port=args.registry_port,
        api_port=args.api_port,
        metrics_ports=metrics_ports(args.metrics_port_base),
        extra_env=area_and_operator(),
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
        say(
            f"Tingyu is up: API {config.api_url} (docs {config.api_url}/docs, "
            f"console {config.api_url}/console/); Ctrl-C stops it."
        )
        say(
            f"NATS (TLS, CA {config.tls_files()[0]}) credentials: {config.auth.root}/users; "
            "new machines: `tingyu node enroll-token` (docs/security.md)"
        )
        say(admin_token_hint(config))
        token = config.admin_token()
        if not args.no_demo:
            try:
                say(demo.ensure(config.api_url, token))
            except demo.DemoImageError as exc:
                say(f"WARNING: {exc}; the README's first deployment needs it (`make up` again retries)")
        say("waiting for this machine's agent to join (/node/list is empty until its first heartbeat)…")
        uuid = wait_ready(config.api_url, token)
        if uuid:
            say(f"this machine is Ready: uuid {uuid}; the README's first deployment can start now.")
        else:
            say("this machine is not Ready yet: look for `agent` lines above (is dockerd running?)")
        starting.clear()
        Supervisor(platform, stopping).run()
    except KeyboardInterrupt:
        pass
    finally:
        starting.clear()
        stopping.set()
        say("stopping…")
        platform.stop()
    return 0


def metrics_ports(base: int) -> dict[str, int]:
    """Fixed metrics ports for a scrape config (deploy/prometheus): base+1 … in SERVICES order."""
    services = [name for name in SERVICES if name != "api"]
    return {name: base + i if base else 0 for i, name in enumerate(services, start=1)}
