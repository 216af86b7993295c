"""Deployer service: six durable consumers and the machines' listings, shared by all replicas, and
the leader's rollout loop."""

from __future__ import annotations

from tingyu.common import subjects
from tingyu.common.desired import LISTING_WAIT_S, migrate
from tingyu.common.jobs import JobStore
from tingyu.common.leases import Lease
from tingyu.common.models.containers import DesiredListingRequest
from tingyu.common.service import Service, run_service, settings_checked
from tingyu.deployer.config import get_settings
from tingyu.deployer.containers import Commands, Dispatched, Listings, Reports
from tingyu.deployer.files import Files
from tingyu.deployer.jobs import Deadlines, fail_job
from tingyu.deployer.prepull import Prepulls
from tingyu.deployer.rollouts import RolloutCommands, RolloutLoop


async def setup(service: Service) -> None:
    settings = get_settings()
    service.metrics(settings.metrics_port)
    bus = await service.connect(settings.platform)
    # Legacy whole-machine desired records become one key per deployment before any command runs.
    await migrate(bus)
    jobs = JobStore(bus)
    dispatched = Dispatched()  # what Commands wrote, so Reports completes those jobs without a read
    commands = Commands(bus, jobs, settings.job_timeout_s, dispatched)
    reports = Reports(bus, jobs, dispatched)
    deadlines = Deadlines(bus, jobs, settings.nudge_again_s)
    files = Files(bus, jobs, settings.file_timeout_s, settings.file_agent_wait_s)
    rollouts = RolloutCommands(bus, jobs)
    prepulls = Prepulls(
        bus,
        jobs,
        parallel=settings.prepull_parallel,
        pull_timeout_s=settings.prepull_pull_timeout_s,
        tick_s=settings.prepull_tick_s,
    )
    loop = RolloutLoop(bus, jobs, settings)
    dead = fail_job(jobs)
    batch = settings.batch
    service.consume(bus, subjects.DEPLOYER_COMMANDS, commands.handle, on_dead=dead, batch=batch)
    service.consume(bus, subjects.DEPLOYER_DEADLINES, deadlines.handle, on_dead=dead, batch=batch)
    service.consume(bus, subjects.DEPLOYER_FILES, files.handle, on_dead=dead, batch=batch)
    service.consume(bus, subjects.DEPLOYER_ROLLOUTS, rollouts.handle, on_dead=dead, batch=batch)
    service.consume(bus, subjects.DEPLOYER_PREPULL, prepulls.handle, on_dead=dead)
    # A report is no job's own message: a dead one leaves its jobs to the next report or their timers.
    service.consume(bus, subjects.DEPLOYER_REPORTS, reports.handle, batch=settings.reports_batch)
    # Machines' listings of their own desired state, shared by every replica; one its machine no
    # longer waits for is not read.
    listings = Listings(bus).answer
    await service.serve_by_subject(
        bus,
        subjects.DESIRED_LISTING_ALL,
        DesiredListingRequest,
        listings,
        queue=subjects.QUEUE_DEPLOYER,
        expires_s=LISTING_WAIT_S,
    )
    lease = Lease(bus, "rollouts", settings.rollout_lease_s)
    service.leader(lease, settings.rollout_tick_s, loop.tick)


def run() -> None:
    with settings_checked("deployer"):
        level = get_settings().platform.log_level
    run_service("deployer", setup, level)


if __name__ == "__main__":
    run()
