"""Small factories for test data (no copied dicts)."""

from __future__ import annotations

import secrets
from typing import Any

from tingyu.common.models.containers import ContainerCommand, ContainerOp, ContainerSpec
from tingyu.common.models.jobs import Job, JobKind
from tingyu.common.models.nodes import Heartbeat, NodeFacts, NodeRecord
from tingyu.common.names import new_job_id, new_node_identity


def spec(image: str = "127.0.0.1:5000/tytest/busybox", version: str = "1", **fields: Any) -> ContainerSpec:
    return ContainerSpec(image=image, imageversion=version, image_ref=f"{image}:{version}", **fields)


def command(
    op: ContainerOp, name: str, node_uuid: str = "tingyu-" + "0" * 32, **fields: Any
) -> ContainerCommand:
    if op in (ContainerOp.CREATE, ContainerOp.UPDATE) and "spec" not in fields:
        fields["spec"] = spec()
    return ContainerCommand(
        job_id=new_job_id(), op=op, name=name, node_uuid=node_uuid, issued_at=0.0, **fields
    )


def facts(area: str = "南京", operator: str = "移动", **fields: Any) -> NodeFacts:
    uuid, nodename = new_node_identity()
    return NodeFacts(uuid=uuid, nodename=nodename, area=area, operator=operator, cpu=4, memory=8192, **fields)


def heartbeat(node: NodeFacts, *, with_facts: bool = True, at: float = 0.0) -> Heartbeat:
    return Heartbeat(
        uuid=node.uuid, facts_digest=node.digest(), facts=node if with_facts else None, sent_at=at
    )


def name(prefix: str = "t") -> str:
    return f"{prefix}{secrets.token_hex(5)}"


def node_record(node: NodeFacts | None = None, *, created: float = 1.0, **fields: Any) -> NodeRecord:
    node = node or facts()
    return NodeRecord(
        facts=node, facts_digest=node.digest(), createtime=created, heartbeattime=created, **fields
    )


def job_record(**fields: Any) -> Job:
    return Job(
        job_id=new_job_id(), kind=JobKind.CONTAINER, op="create", created_at=1.0, updated_at=1.0, **fields
    )
