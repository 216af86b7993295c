"""`tingyu up`: the whole platform on this machine, embedded defaults, state under ./var.

Every process is supervised (`supervisor.py`): one that exits is started again with back-off.
Ctrl-C or SIGTERM stops the supervisor first, then every process; nothing restarts meanwhile.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from tingyu.cli.launcher import Platform, PlatformConfig
from tingyu.cli.supervisor import Supervisor


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("up", help="run NATS, the registry, every service and one agent here")
    parser.add_argument("--state-dir", type=Path, default=Path("./var"))
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument("--nats-port", type=int, default=4222)
    parser.add_argument("--registry-port", type=int, default=5000)
    parser.set_defaults(func=up)


def up(args: argparse.Namespace) -> int:
    config = PlatformConfig(
        state_dir=args.state_dir.resolve(),
        nats_port=args.nats_port,
        registry_port=args.registry_port,
        api_port=args.api_port,
    )
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
            f"Tingyu is up: API {config.api_url} (docs {config.api_url}/docs); Ctrl-C stops it.", flush=True
        )
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
