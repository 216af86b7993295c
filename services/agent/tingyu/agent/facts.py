"""What the agent reports about its machine, read off the host each time (cheap: no subprocesses)."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

import psutil

from tingyu.agent.config import AgentSettings
from tingyu.agent.identity import Identity
from tingyu.common.models.nodes import Disk, Nic, NodeFacts

# Filesystems that are not storage a tenant could use.
_PSEUDO_FS = frozenset(
    {
        "overlay",
        "tmpfs",
        "devtmpfs",
        "squashfs",
        "aufs",
        "ramfs",
        "proc",
        "sysfs",
        "cgroup",
        "cgroup2",
        "nsfs",
        "fuse.lxcfs",
        "iso9660",
        "autofs",
        "devpts",
        "mqueue",
        "tracefs",
        "debugfs",
        "securityfs",
    }
)
_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "i386": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
_GB = 1024**3


def read_facts(identity: Identity, settings: AgentSettings) -> NodeFacts:
    """This machine's facts plus what the operator configured (area, operator, bandwidth)."""
    nics = read_nics()
    real = [nic for nic in nics if nic.Type == "real"]
    return NodeFacts(
        uuid=identity.uuid,
        nodename=identity.nodename,
        area=settings.area,
        operator=settings.operator,
        bandwith=settings.bandwidth_mbps,
        cpu=psutil.cpu_count(logical=True) or os.cpu_count() or 0,
        memory=psutil.virtual_memory().total // 2**20,
        eth=nics,
        diskinfo=read_disks(),
        operatingsystem="linux",
        osimage=read_os_image(),
        kernelversion=platform.release(),
        architecture=architecture(),
        address=(real or nics)[0].IP if nics else "",
    )


def read_nics(sys_net: Path = Path("/sys/class/net")) -> list[Nic]:
    """Interfaces with an IPv4 address; `real` when backed by a device (not a bridge, veth or tunnel)."""
    nics = []
    for name, addrs in sorted(psutil.net_if_addrs().items()):
        if name == "lo":
            continue
        kind = "real" if (sys_net / name / "device").exists() else "virt"
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                nics.append(Nic(Name=name, IP=addr.address, Type=kind))
    return nics


def read_disks() -> list[Disk]:
    """Mounted block filesystems, one per device (its shortest mount point), in GB."""
    by_device: dict[str, str] = {}
    for part in psutil.disk_partitions(all=False):
        if part.fstype in _PSEUDO_FS or not part.device.startswith("/"):
            continue
        known = by_device.get(part.device)
        if known is None or len(part.mountpoint) < len(known):
            by_device[part.device] = part.mountpoint
    disks = []
    for mountpoint in sorted(by_device.values()):
        try:
            usage = psutil.disk_usage(mountpoint)
        except OSError:  # unmounted meanwhile, or not readable
            continue
        disks.append(Disk(Name=mountpoint, Size=round(usage.total / _GB), Use=round(usage.used / _GB)))
    return disks


def read_os_image(os_release: Path = Path("/etc/os-release")) -> str:
    """PRETTY_NAME of os-release, e.g. `Debian GNU/Linux 12 (bookworm)`."""
    try:
        lines = os_release.read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "PRETTY_NAME":
            return value.strip().strip("\"'")
    return ""


def architecture() -> str:
    """The machine's architecture in Go/OCI naming (amd64, arm64, ...)."""
    machine = platform.machine().lower()
    return _ARCH.get(machine, machine)
