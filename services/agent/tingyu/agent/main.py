"""`tingyu-agent`, one per machine: identity, Docker and the bus are opened here, the loops declared.

Resources close in reverse at stop: the agent stops listening, the bus drains, Docker closes.
The machine's containers keep running afterwards. Started while NATS is unreachable, the agent
holds the machine on the desired state on disk until it can connect (`autonomy`); its sampler runs
from the start and buffers until then (`sampling`).
"""

from __future__ import annotations

import functools
import logging

from tingyu.agent.agent import Agent
from tingyu.agent.applied import AppliedRestarts
from tingyu.agent.autonomy import DesiredMemory, connect_holding
from tingyu.agent.config import AgentSettings, get_settings
from tingyu.agent.docker_runtime import DockerRuntime
from tingyu.agent.enroll import ensure_enrolled, machine_platform
from tingyu.agent.execs import ExecServer
from tingyu.agent.facts import read_facts
from tingyu.agent.files import FileFetcher
from tingyu.agent.identity import load_or_create
from tingyu.agent.logs import LogServer
from tingyu.agent.pull_proxy import pull_proxies
from tingyu.agent.pulls import Puller
from tingyu.agent.reconciler import Reconciler
from tingyu.agent.sampling import Sampler, SamplerSettings
from tingyu.common import subjects
from tingyu.common.models.remote import PullRequest
from tingyu.common.policy import Policy
from tingyu.common.service import Service, run_service, settings_checked

log = logging.getLogger(__name__)


async def setup(service: Service, settings: AgentSettings | None = None) -> None:
    """Open this machine's agent on `service` (settings from the environment unless given)."""
    settings = settings or get_settings()
    service.metrics(settings.metrics_port)
    identity = load_or_create(settings.state_dir)
    enrollment = await ensure_enrolled(settings, identity)
    # The area and ISP in the settings win at every start; the token's presets fill what is unset.
    presets = {"area": settings.area or enrollment.area, "operator": settings.operator or enrollment.operator}
    settings = settings.model_copy(update=presets)
    platform = machine_platform(settings.platform, enrollment, identity.uuid)
    runtime = DockerRuntime.connect(
        settings.docker_host,
        settings.docker_timeout_s,
        registry=platform.registry,
        registry_user=platform.registry_user,
        registry_password=platform.registry_password,
        pull_timeout_s=settings.pull_timeout_s,
        stop_timeout_s=settings.stop_timeout_s,
        start_settle_s=settings.start_settle_s,
    )
    # Capped pulls (the machine's cap, a pre-pull job's): a local proxy while one is in flight.
    runtime.pull_proxies = pull_proxies(platform, settings.pull_rate)
    service.stack.callback(log.info, "agent %s stopped", identity.uuid)
    service.stack.callback(runtime.close)
    reconciler = Reconciler(
        runtime,
        identity.uuid,
        AppliedRestarts(settings.state_dir / "applied.json"),
        settings.parallel,
        Policy.from_settings(own_registry=platform.registry),
    )
    memory = DesiredMemory(settings.state_dir / "desired.json")
    # Metering does not wait for NATS: samples of an outage are buffered and published later.
    sampler = Sampler(identity.uuid, SamplerSettings(), memory)
    sampler.start()
    service.stack.push_async_callback(sampler.close)
    # Agents do not declare the platform's streams and buckets: the central services own them.
    bus = await connect_holding(service, platform, reconciler, memory, settings.resync_s)
    if bus is None:
        return  # stopped before NATS could be reached; the containers stay as they are
    sampler.publish_on(bus)
    service.stack.push_async_callback(sampler.close)  # before the bus drains: the last batches go out
    log.info("agent %s (nodename %s) starting", identity.uuid, identity.nodename)
    uuid = identity.uuid
    logs = LogServer(
        bus,
        runtime,
        uuid,
        max_lines=settings.logs_max_lines,
        max_bytes=settings.logs_max_bytes,
        follow_max_s=settings.logs_follow_max_s,
    )
    execs = ExecServer(
        bus,
        runtime,
        uuid,
        max_sessions=settings.exec_max_sessions,
        idle_s=settings.exec_idle_s,
        timeout_s=settings.exec_timeout_s,
        max_output_bytes=settings.exec_max_output_bytes,
    )
    puller = Puller(runtime, settings.pull_parallel)
    await service.serve(bus, subjects.agent_request(uuid, "pull"), PullRequest, puller.handle)
    agent = Agent(
        bus,
        identity,
        reconciler,
        functools.partial(read_facts, identity, settings),
        heartbeat_s=settings.heartbeat_s,
        resync_s=settings.resync_s,
        full_read_s=settings.full_read_s,
        facts_every=settings.facts_every,
        files=FileFetcher(bus, runtime, identity.uuid, settings.max_file_bytes, settings.file_parallel),
        memory=memory,
        serving=[logs, execs],
    )
    await agent.start()
    service.stack.push_async_callback(agent.close)
    for name, loop in agent.loops():
        service.loop(name, loop)


def run() -> None:
    with settings_checked("agent"):
        settings = get_settings()
    if settings.runtime == "kubernetes":  # the `k8s` extra: imported only when asked for
        from tingyu.agent.kube.main import run as run_kubernetes

        run_kubernetes()
        return
    run_service(
        "agent", functools.partial(setup, settings=settings), settings.platform.log_level, job_logs=False
    )


if __name__ == "__main__":
    run()
