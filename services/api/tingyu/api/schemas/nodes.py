"""The node interfaces' answer (contract §六)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class NodeView(BaseModel):
    """A machine in the contract's shape: `eth` and `diskinfo` are JSON strings, as old clients expect."""

    area: str
    createtime: str
    memory: int = Field(description="MiB")
    address: str = Field(description="The nodename, as the contract's example shows (the IP is under `ip`)")
    ip: str = Field(description="Extension: the machine's address")
    bandwith: int = Field(description="Mbps")
    operatingsystem: str
    cpu: int
    uuid: str
    operator: str
    kernelversion: str
    nodename: str
    eth: str = Field(description="JSON list of {Name, IP, Type}")
    systemos: str
    osimage: str
    diskinfo: str = Field(description="JSON list of {Name, Size, Use} (GiB)")
    heartbeattime: str
    status: str = Field(description="Ready or NotReady")
    architecture: str
    simulated: bool
