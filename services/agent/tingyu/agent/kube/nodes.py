"""Nodes as machines: identity, facts and readiness read from a Node object (pure, no API calls).

Label values must be ASCII, so the area and the operator are read from the annotation of the same
key first (any text, e.g. `tingyu.io/area: 南京`) and from the label otherwise; an operator label
may use the ASCII names `cmcc`, `unicom`, `telecom`."""

from __future__ import annotations

from typing import Any

from tingyu.agent.identity import Identity
from tingyu.common.models.nodes import NodeFacts

AREA = "tingyu.io/area"
OPERATOR = "tingyu.io/operator"
BANDWIDTH = "tingyu.io/bandwidth-mbps"
HOSTNAME = "kubernetes.io/hostname"
OPERATOR_NAMES = {"cmcc": "移动", "unicom": "联通", "telecom": "电信"}


def identity_of(node: Any) -> Identity:
    """A Node's machine identity: `tingyu-<its uid without dashes>`, stable for the Node's life."""
    hexed = str(node.metadata.uid).replace("-", "").lower()
    return Identity(uuid=f"tingyu-{hexed}", nodename=hexed)


def hostname_of(node: Any) -> str:
    """What a Pod's `kubernetes.io/hostname` nodeSelector must say to land on this Node."""
    return str((node.metadata.labels or {}).get(HOSTNAME) or node.metadata.name)


def is_ready(node: Any) -> bool:
    """The Node's Ready condition is True."""
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def facts_of(node: Any) -> NodeFacts:
    """The contract's node fields from Node status, nodeInfo, labels and annotations."""
    identity = identity_of(node)
    labels = node.metadata.labels or {}
    notes = node.metadata.annotations or {}
    status = node.status
    info = status.node_info if status else None
    capacity = (status.capacity if status else None) or {}
    operator = str(notes.get(OPERATOR) or labels.get(OPERATOR) or "")
    return NodeFacts(
        uuid=identity.uuid,
        nodename=identity.nodename,
        area=str(notes.get(AREA) or labels.get(AREA) or ""),
        operator=OPERATOR_NAMES.get(operator, operator),
        bandwith=_int(notes.get(BANDWIDTH) or labels.get(BANDWIDTH)),
        cpu=_int(capacity.get("cpu")),
        memory=memory_mib(str(capacity.get("memory") or "0")),
        operatingsystem=str(info.operating_system if info else "linux") or "linux",
        osimage=str(info.os_image if info else ""),
        kernelversion=str(info.kernel_version if info else ""),
        architecture=str(info.architecture if info else ""),
        address=_internal_ip(status),
    )


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def memory_mib(quantity: str) -> int:
    """A Kubernetes memory quantity (`8Gi`, `16318208Ki`, `1e9`) in MiB."""
    for suffix, factor in sorted(_UNITS.items(), key=lambda item: -len(item[0])):
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor) // 2**20
    try:
        return int(float(quantity)) // 2**20
    except ValueError:
        return 0


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def _internal_ip(status: Any) -> str:
    for address in (status.addresses if status else None) or []:
        if address.type == "InternalIP":
            return str(address.address)
    return ""
