"""One process as the agent of every Node: a `NodeAgent` per Node (heartbeats, desired state,
reconcile passes and reports of its own, over the Node's `KubeRuntime`), kept in step with the
Node list. A Node that is not Ready sends no heartbeats, so the platform sees it go NotReady."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from tingyu.agent.agent import Agent
from tingyu.agent.applied import AppliedRestarts
from tingyu.agent.files import FileFetcher
from tingyu.agent.kube import nodes
from tingyu.agent.kube.config import KubeSettings
from tingyu.agent.kube.runtime import KubeCluster
from tingyu.agent.reconciler import Reconciler
from tingyu.common.bus import Bus
from tingyu.common.models.nodes import NodeFacts
from tingyu.common.policy import Policy
from tingyu.common.service import LoopFn, wait_or_stop

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0


@dataclass
class NodeAgent:
    """The agent of one Node: its loops run until `stop`; the heartbeat only while it is Ready."""

    agent: Agent
    facts: NodeFacts
    ready: bool
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    beating: asyncio.Event = field(default_factory=asyncio.Event)  # set: the heartbeat loop runs
    quiet: asyncio.Event = field(default_factory=asyncio.Event)  # set: the heartbeat loop ends
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Fleet:
    """Every Node of the cluster as a machine of the platform."""

    def __init__(self, bus: Bus, cluster: KubeCluster, settings: KubeSettings, agent_settings: Any) -> None:
        self.bus = bus
        self.cluster = cluster
        self.settings = settings
        self.agent_settings = agent_settings
        self.machines: dict[str, NodeAgent] = {}

    async def sync_nodes(self, stop: asyncio.Event) -> None:
        """List the Nodes every `node_sync_s`: start new machines, stop removed ones, follow Ready."""
        try:
            while True:
                try:
                    await self.refresh()
                except Exception:
                    log.exception("listing the cluster's Nodes failed; trying again")
                if await wait_or_stop(stop, self.settings.node_sync_s):
                    return
        finally:
            await asyncio.gather(*(self._end(uuid) for uuid in list(self.machines)))

    async def refresh(self) -> None:
        seen: set[str] = set()
        for node in await self.cluster.nodes(self.settings.node_selector):
            identity = nodes.identity_of(node)
            seen.add(identity.uuid)
            facts, ready = nodes.facts_of(node), nodes.is_ready(node)
            machine = self.machines.get(identity.uuid)
            if machine is None:
                machine = await self._start(node)
            machine.facts = facts
            if ready != machine.ready:
                log.info(
                    "node %s (%s) is %s", node.metadata.name, identity.uuid, "Ready" if ready else "NotReady"
                )
            machine.ready = ready
            self._beat(machine)
            if not ready:
                machine.quiet.set()
        for uuid in set(self.machines) - seen:
            log.info("machine %s: its Node is gone; its agent stops", uuid)
            await self._end(uuid)

    async def _start(self, node: Any) -> NodeAgent:
        identity = nodes.identity_of(node)
        runtime = self.cluster.runtime(identity.uuid, nodes.hostname_of(node))
        folder = self.settings.state_dir / identity.uuid
        s = self.agent_settings
        holder: list[NodeAgent] = []
        agent = Agent(
            self.bus,
            identity,
            Reconciler(
                runtime,
                identity.uuid,
                AppliedRestarts(folder / "applied.json"),
                s.parallel,
                Policy.from_settings(own_registry=self.settings.platform.registry),
            ),
            lambda: holder[0].facts,
            heartbeat_s=s.heartbeat_s,
            resync_s=s.resync_s,
            facts_every=s.facts_every,
            files=FileFetcher(self.bus, runtime, identity.uuid, s.max_file_bytes, s.file_parallel),
        )
        machine = NodeAgent(agent, nodes.facts_of(node), nodes.is_ready(node))
        holder.append(machine)
        await agent.start()
        for name, loop in agent.loops():
            if name != "heartbeat":
                machine.tasks.append(
                    asyncio.create_task(_keep(f"{identity.uuid}:{name}", loop, machine.stop))
                )
        self.machines[identity.uuid] = machine
        log.info("machine %s is Node %s", identity.uuid, node.metadata.name)
        return machine

    def _beat(self, machine: NodeAgent) -> None:
        """Start the heartbeat loop of a Ready machine; a NotReady one's loop ends (see `_beats`)."""
        if machine.ready and not machine.beating.is_set():
            machine.beating.set()
            machine.quiet.clear()
            machine.tasks.append(asyncio.create_task(self._beats(machine)))

    async def _beats(self, machine: NodeAgent) -> None:
        heartbeat = dict(machine.agent.loops())["heartbeat"]
        try:
            await _keep(f"{machine.agent.uuid}:heartbeat", heartbeat, machine.quiet)
        finally:
            machine.beating.clear()

    async def _end(self, uuid: str) -> None:
        machine = self.machines.pop(uuid, None)
        if machine is None:
            return
        machine.stop.set()
        machine.quiet.set()
        await asyncio.gather(*machine.tasks, return_exceptions=True)
        await machine.agent.close()


async def _keep(name: str, loop: LoopFn, stop: asyncio.Event) -> None:
    """Run `loop` until `stop`, again with back-off when it fails (as the service skeleton does)."""
    failures = 0
    while not stop.is_set():
        try:
            await loop(stop)
            failures = 0
        except Exception:
            failures += 1
            log.exception("%s failed (%d in a row); restarting", name, failures)
        with contextlib.suppress(Exception):
            await wait_or_stop(stop, min(0.5 * 2 ** min(failures, 6), MAX_BACKOFF_S))
