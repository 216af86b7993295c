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


# How long a machine may answer on the reply inbox of a request it received, counted from the
# latest message that named that inbox as its reply: a file copy or an image pull answers once it
# is done (up to the deployer's 900 s file timeout), and a stream (followed logs, an interactive
# exec) keeps its inbox answerable because the asker names it again in every ack, keystroke and
# keep-alive it sends. A stream sends any number of messages there (`max` below zero).
REPLY_TTL_S = 3600.0


def machine_permissions(node_uuid: str, reply_ttl_s: float = REPLY_TTL_S) -> dict[str, Any]:
    """Publish its heartbeats, reports and samples, read its own desired state, write file copies;
    subscribe to its own nudges and requests and to its own inbox; answer the requests it gets,
    with as many messages as a stream needs, only on their reply inboxes."""
    files = subjects.FILES.name
    return {
        "pub": {
            "allow": [
                subjects.heartbeat(node_uuid),
                # nats-server maps a heartbeat onto its partition subject before it checks the
                # publish permission; the uuid still pins it to this machine (docs/security.md).
                subjects.heartbeat_partitions(node_uuid),
                subjects.report(node_uuid),
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
        "resp": {"max": -1, "ttl": int(reply_ttl_s * 1e9)},  # nanoseconds
    }


def service_permissions() -> dict[str, Any]:
    """The central services are trusted with the whole account (JetStream's API names streams and
    consumers in subjects and bodies, so narrower rules would add little); each has its own user
    so that one can be revoked alone."""
    return {}
