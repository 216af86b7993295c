"""What each NATS user may do. A machine's permissions name its own uuid in every subject, so the
subject a message arrives on says which machine sent it: consumers take the identity from there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tingyu.common import subjects
from tingyu.common.auth import jwt

INBOX = "_INBOX"


def machine_inbox(node_uuid: str) -> str:
    """The inbox prefix of one machine: replies to its own requests (JetStream acks, direct gets)
    come back under it, and no other machine may subscribe there."""
    return f"{INBOX}.{node_uuid}"


def _api(domain: str) -> str:
    """The JetStream API prefix; with a `domain` (a cluster reached through leaf nodes) it names it."""
    return f"$JS.{domain}.API" if domain else "$JS.API"


def desired_get(node_uuid: str, domain: str = "") -> str:
    """The JetStream API subjects of direct gets of the machine's own desired-state keys
    (`<uuid>.<deployment>`): no other machine's key matches."""
    spec = subjects.DESIRED
    return f"{_api(domain)}.DIRECT.GET.{spec.stream}.{spec.prefix}{subjects.desired_keys(node_uuid)}"


def legacy_desired_get(node_uuid: str, domain: str = "") -> str:
    """The direct get of the machine's record in the layout before one key per deployment (its bare
    uuid), which an agent reads too until the deployer has split it (an upgrade in any order of
    agents first)."""
    spec = subjects.DESIRED
    return f"{_api(domain)}.DIRECT.GET.{spec.stream}.{spec.prefix}{node_uuid}"


def desired_listing(node_uuid: str, domain: str = "") -> list[str]:
    """The JetStream API subjects with which a machine lists its own desired-state keys: create
    (the filter is part of the subject, and the server holds the consumer to it), fetch from and
    delete one consumer named after the machine; no other name and no other filter."""
    spec = subjects.DESIRED
    api, consumer = _api(domain), subjects.desired_lister(node_uuid)
    return [
        f"{api}.CONSUMER.CREATE.{spec.stream}.{consumer}.{spec.prefix}{subjects.desired_keys(node_uuid)}",
        f"{api}.CONSUMER.MSG.NEXT.{spec.stream}.{consumer}",
        f"{api}.CONSUMER.DELETE.{spec.stream}.{consumer}",
    ]


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
                *desired_listing(node_uuid),
                *desired_listing(node_uuid, "*"),
                legacy_desired_get(node_uuid),
                legacy_desired_get(node_uuid, "*"),
                # Its listing as a deployer reads it (core NATS: the same subject in any domain).
                subjects.desired_listing(node_uuid),
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


def creds_are_current(creds: Path) -> bool:
    """Whether a machine's `.creds` file grants what `machine_permissions` grants today (a credential
    signed before a change of layout, e.g. one desired-state key per deployment, does not: the agent
    enrolls again with the same key when it is given a token). False for a file that does not parse."""
    try:
        text = creds.read_text()
        token = text.split("-----BEGIN NATS USER JWT-----", 1)[1].split("------END", 1)[0].strip()
        claims = jwt.decode(token)
        granted = claims["nats"]
        wanted = machine_permissions(str(claims["name"]))
        return all(
            sorted(granted.get(kind, {}).get("allow", [])) == sorted(wanted[kind]["allow"])
            for kind in ("pub", "sub")
        )
    except (OSError, IndexError, KeyError, TypeError, ValueError):
        return False
