"""`tingyu sim`: a SIMULATED fleet against a running platform (TINGYU_NATS_URL), over a few processes."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tingyu.sim.main import BANNER, add_options


def _shared() -> list[argparse.Action]:
    """The simulator process's own options, passed through as given (but --nodes, split here)."""
    probe = argparse.ArgumentParser(add_help=False)
    add_options(probe)
    return [a for a in probe._actions if a.dest != "nodes"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "sim",
        help="run N SIMULATED machines (simulated engine, no real hosts) against a running platform",
        description=f"{BANNER}. Every simulated machine is marked simulated=true in the node registry.",
    )
    add_options(parser)
    parser.add_argument("--procs", type=int, default=1, help="simulator processes to spread machines over")
    parser.add_argument("--containers-per-node", type=int, default=0, help="informational: expected load")
    parser.add_argument("--stats-dir", type=Path, default=None, help="each process writes its counters here")
    parser.set_defaults(func=sim)


def argv_of(args: argparse.Namespace, offset: int, count: int, index: int) -> list[str]:
    """The command line of one simulator process."""
    argv = [sys.executable, "-m", "tingyu.sim.main", "--nodes", str(count), "--offset", str(offset)]
    for action in _shared():
        argv += [action.option_strings[0], str(getattr(args, action.dest))]
    if args.stats_dir is not None:
        argv += ["--stats-file", str(args.stats_dir / f"sim-{index}.json")]
    return argv


def shares(nodes: int, procs: int) -> list[tuple[int, int]]:
    """(offset, count) of each process: the machines split as evenly as possible."""
    procs = max(1, min(procs, nodes))
    base, extra = divmod(nodes, procs)
    out, offset = [], 0
    for index in range(procs):
        count = base + (1 if index < extra else 0)
        out.append((offset, count))
        offset += count
    return out


def sim(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        print("--nodes must be at least 1", file=sys.stderr)
        return 2
    if args.stats_dir is not None:
        args.stats_dir.mkdir(parents=True, exist_ok=True)
    print(f"{BANNER}.", flush=True)
    print(
        f"tingyu sim: {args.nodes} SIMULATED machines in {min(args.procs, args.nodes)} process(es) "
        f"against {os.environ.get('TINGYU_NATS_URL', 'nats://127.0.0.1:4222')}; Ctrl-C stops them.",
        flush=True,
    )
    children = [
        subprocess.Popen(argv_of(args, offset, count, index), stdin=subprocess.DEVNULL)
        for index, (offset, count) in enumerate(shares(args.nodes, args.procs))
    ]
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    codes = [child.wait() for child in children]
    print("tingyu sim: the SIMULATED fleet has stopped", flush=True)
    return 0 if stopping.is_set() or not any(codes) else 1
