"""What each NATS user may do. A machine's permissions name its own uuid in every subject, so the
subject a message arrives on says which machine sent it: consumers take the identity from there."""

from __future__ import annotations

from typing import Any

from tingyu.common import subjects

INBOX = "_INBOX"


def machine_inbox(node_uuid: str) -> str:
    """The inbox prefix of one machine: replies to its own requests (JetStream acks, direct gets)
    come back under it, and no other machine may subscribe there."""
    return f"{INBOX}.{node_uuid}"


def desired_get(node_uuid: str, domain: str = "") -> str:
    """The JetStream API subject of a direct get of the machine's own desired-state key; with a
    JetStream `domain` (a cluster reached through leaf nodes) the API prefix names it."""
    spec = subjects.DESIRED
    api = f"$JS.{domain}.API" if domain else "$JS.API"
    return f"{api}.DIRECT.GET.{spec.stream}.{spec.prefix}{node_uuid}"


def machine_permissions(node_uuid: str) -> dict[str, Any]:
    """Publish its heartbeats, reports and samples, read its own desired state, write file copies;
    subscribe to its own nudges and requests and to its own inbox; answer the requests it gets."""
    files = subjects.FILES.name
    return {
        "pub": {
            "allow": [
                subjects.heartbeat(node_uuid),
                subjects.observed(node_uuid),
                subjects.samples(node_uuid),
                desired_get(node_uuid),
                # The same read in any JetStream domain (TINGYU_NATS_DOMAIN, docs/security.md): the
                # credential stays valid whether the machine reaches a single server or a leaf node.
                desired_get(node_uuid, "*"),
                # Object names are job ids the machine learns only from its own requests;
                # NATS cannot bind an object name to a machine (docs/security.md).
                f"$O.{files}.C.*",
                f"$O.{files}.M.*",
            ]
        },
        "sub": {"allow": [subjects.agent_all(node_uuid), f"{machine_inbox(node_uuid)}.>"]},
        "resp": {"max": 1, "ttl": 0},
    }


def service_permissions() -> dict[str, Any]:
    """The central services are trusted with the whole account (JetStream's API names streams and
    consumers in subjects and bodies, so narrower rules would add little); each has its own user
    so that one can be revoked alone."""
    return {}
