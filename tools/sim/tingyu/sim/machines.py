"""Who the simulated machines are: deterministic identities and facts with an area/operator mix.

The same seed and index always give the same machine, so a restarted simulator brings the same
fleet back (its machines turn Ready again instead of new ones joining).
"""

from __future__ import annotations

import hashlib

from tingyu.agent.identity import Identity
from tingyu.common.models.nodes import OPERATORS, Disk, Nic, NodeFacts

AREAS = ("南京", "上海", "北京", "广州", "成都", "武汉", "西安", "杭州", "沈阳", "长沙")
BANDWIDTHS_MBPS = (100, 300, 1000, 1000, 10000)
CPUS = (4, 8, 16, 32)
OS_IMAGE = "Tingyu simulated machine (not a real host)"
KERNEL = "simulated"


def identity(seed: str, index: int) -> Identity:
    """The index-th machine of the fleet named by `seed`."""
    hex32 = hashlib.sha256(f"tingyu-sim:{seed}:{index}".encode()).hexdigest()[:32]
    return Identity(uuid=f"tingyu-{hex32}", nodename=hex32)


def facts(ident: Identity, index: int) -> NodeFacts:
    """Plausible facts of a simulated machine; area and operator cycle at different strides."""
    octets = int(ident.nodename[:6], 16)
    cpu = CPUS[index % len(CPUS)]
    return NodeFacts(
        uuid=ident.uuid,
        nodename=ident.nodename,
        area=AREAS[index % len(AREAS)],
        operator=OPERATORS[(index // len(AREAS)) % len(OPERATORS)],
        bandwith=BANDWIDTHS_MBPS[index % len(BANDWIDTHS_MBPS)],
        cpu=cpu,
        memory=cpu * 4096,
        eth=[Nic(Name="sim0", IP=f"10.{octets >> 16 & 255}.{octets >> 8 & 255}.{octets & 255}", Type="real")],
        diskinfo=[Disk(Name="/", Size=2000, Use=(index * 37) % 1800)],
        operatingsystem="linux",
        osimage=OS_IMAGE,
        kernelversion=KERNEL,
        architecture="amd64",
        address="",
    )
