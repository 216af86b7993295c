"""`python -m tingyu.sim.main`: one process of a SIMULATED fleet (`tingyu sim` starts several).

The NATS address comes from the platform settings (`TINGYU_NATS_URL`).
"""

from __future__ import annotations

import argparse
import functools
import logging
from pathlib import Path

from tingyu.common.service import Service, run_service
from tingyu.common.settings import get_platform_settings
from tingyu.sim.fleet import Fleet, FleetConfig

log = logging.getLogger(__name__)
BANNER = "THIS IS A SIMULATION: simulated machines and a simulated container engine, no real hosts"


def parser() -> argparse.ArgumentParser:
    """The options of one simulator process (the CLI passes them through)."""
    parse = argparse.ArgumentParser(
        prog="tingyu-sim", description=f"{BANNER}. Runs simulated machines against a running platform."
    )
    add_options(parse)
    parse.add_argument("--offset", type=int, default=0, help="index of this process's first machine")
    parse.add_argument("--stats-file", type=Path, default=None, help="write this process's counters here")
    return parse


def add_options(parse: argparse.ArgumentParser) -> None:
    """Options shared by `tingyu sim` and one simulator process."""
    parse.add_argument("--nodes", type=int, required=True, help="simulated machines to run")
    parse.add_argument("--seed", default="sim", help="names the fleet: same seed, same simulated machines")
    parse.add_argument("--heartbeat-s", type=float, default=10.0)
    parse.add_argument("--resync-s", type=float, default=30.0)
    parse.add_argument("--facts-every", type=int, default=30)
    parse.add_argument("--start-latency-ms", type=float, default=0.0, help="simulated container start time")
    parse.add_argument("--failure-rate", type=float, default=0.0, help="share of simulated creates that fail")
    parse.add_argument("--workers", type=int, default=128, help="machine passes at once per process")
    parse.add_argument("--sample-s", type=float, default=0.0, help="metering sample period (0: off)")


def config_of(args: argparse.Namespace) -> FleetConfig:
    return FleetConfig(
        nodes=args.nodes,
        offset=args.offset,
        seed=args.seed,
        heartbeat_s=args.heartbeat_s,
        resync_s=args.resync_s,
        facts_every=args.facts_every,
        start_latency_s=args.start_latency_ms / 1000,
        failure_rate=args.failure_rate,
        workers=args.workers,
        sample_s=args.sample_s,
        stats_file=args.stats_file,
        freeze_heap=True,  # this process is the fleet's alone
    )


async def setup(service: Service, config: FleetConfig) -> None:
    """Open the simulated machines of this process on `service`."""
    log.warning(BANNER)
    bus = await service.connect(get_platform_settings(), ensure=False)
    await Fleet(bus, config).declare(service)


def run() -> None:
    args = parser().parse_args()
    config = config_of(args)
    name = f"sim[{config.offset}:{config.offset + config.nodes}] (SIMULATED)"
    run_service(
        name, functools.partial(setup, config=config), get_platform_settings().log_level, job_logs=False
    )


if __name__ == "__main__":
    run()
