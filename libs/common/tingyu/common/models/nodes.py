"""Machines: facts an agent reads off its host, heartbeats, and the node registry record."""

from __future__ import annotations

import hashlib
from enum import StrEnum

from pydantic import Field

from tingyu.common.models.base import Message

OPERATORS = ("移动", "联通", "电信")


class Nic(Message):
    """A network interface; Type is `real` for a physical NIC, `virt` otherwise (contract names)."""

    Name: str
    IP: str
    Type: str


class Disk(Message):
    """A mounted filesystem; Size and Use in GB (contract names)."""

    Name: str
    Size: int
    Use: int


class NodeFacts(Message):
    """Everything an agent reports about its machine, in the contract's node field names."""

    uuid: str
    nodename: str
    area: str = ""
    operator: str = ""
    bandwith: int = 0  # Mbps (the contract's spelling)
    cpu: int = 0
    memory: int = 0  # MiB
    eth: list[Nic] = Field(default_factory=list)
    diskinfo: list[Disk] = Field(default_factory=list)
    operatingsystem: str = "linux"
    osimage: str = ""
    kernelversion: str = ""
    architecture: str = ""
    address: str = ""

    def digest(self) -> str:
        """A short hash of the facts: heartbeats carry it so unchanged facts need not travel."""
        return hashlib.sha256(self.to_bytes()).hexdigest()[:16]


class Heartbeat(Message):
    """Core-NATS heartbeat; `facts` rides along at start, on change and every so often."""

    uuid: str
    facts_digest: str
    facts: NodeFacts | None = None
    sent_at: float
    simulated: bool = False


class NodesHeard(Message):
    """When a nodes replica last heard each of some machines of one heartbeat partition: the
    machines heard since its previous message (core NATS, every `TINGYU_NODES_HEARD_EVERY_S`). The
    API shows the later of this and the stored `heartbeattime`, so a machine's heartbeat time is
    current without a write to `ty_nodes` per beat or per minute."""

    heard: dict[str, float] = Field(description="machine uuid -> epoch seconds of its last heartbeat heard")


class NodeStatus(StrEnum):
    """Readiness of a machine."""

    READY = "Ready"
    NOT_READY = "NotReady"


class NodeRecord(Message):
    """Bucket `ty_nodes`, key = uuid. `heartbeattime` is refreshed at most once per lease period
    (`TINGYU_NODES_LEASE_S`); the times heard since travel as `NodesHeard`."""

    facts: NodeFacts
    facts_digest: str
    status: NodeStatus = NodeStatus.READY
    createtime: float
    heartbeattime: float
    simulated: bool = False
