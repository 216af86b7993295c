"""Enrollment tokens and machine revocation, shared by the CLI (`tingyu node`), the launcher and
the API's enroll route.

A token is shown once and stored only as its sha256 in `ty_enroll`; it presets the machine's area
and ISP and may be used `uses` times before it expires. Revoking a machine marks its key revoked in
`ty_enroll`, adds the key to the account's revocation list and pushes the re-signed account JWT to
nats-server, which closes the machine's connections and refuses new ones.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time

import nats

from tingyu.common import subjects
from tingyu.common.auth.material import CLAIMS_UPDATE, AuthDir
from tingyu.common.bus.connection import Bus, connect_options
from tingyu.common.errors import NodeNotFound, Unavailable
from tingyu.common.models.enroll import EnrollRecord, EnrollToken
from tingyu.common.settings import PlatformSettings

TOKEN_PREFIX = "tye_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def new_token(
    bus: Bus, area: str = "", operator: str = "", ttl_s: float = 86400.0, uses: int = 1
) -> str:
    """A fresh enrollment token (stored hashed); the caller shows it once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    created = time.time()
    record = EnrollToken(
        area=area, operator=operator, created_at=created, expires_at=created + ttl_s, uses_left=uses
    )
    key = subjects.enroll_token_key(token_hash(token))
    await bus.store(subjects.ENROLL).create(key, EnrollRecord(token=record))
    return token


async def revoke_machine(bus: Bus, settings: PlatformSettings, node_uuid: str) -> str:
    """Cut the machine off: its key is marked revoked and put on the account's revocation list,
    which is pushed to nats-server at once. Returns the revoked public key."""
    store = bus.store(subjects.ENROLL)
    key = subjects.machine_key(node_uuid)
    record = await store.get(key)
    if record is None or record.machine is None:
        raise NodeNotFound(detail=f"machine {node_uuid} never enrolled")
    machine = record.machine
    account = AuthDir(settings.auth_dir, settings.heartbeat_partitions).revoke(machine.public_key)
    await push_account(settings, AuthDir(settings.auth_dir, settings.heartbeat_partitions), account)
    revoked = machine.model_copy(update={"revoked_at": time.time()})
    await store.put(key, EnrollRecord(machine=revoked))
    return machine.public_key


async def push_account(settings: PlatformSettings, auth: AuthDir, account_jwt: str) -> None:
    """Hand the re-signed account JWT to nats-server (the full resolver stores it and applies
    its revocations to connected clients at once)."""
    options = connect_options(settings) | {"user_credentials": str(auth.creds("system"))}
    nc = await nats.connect(settings.nats_servers, name="tingyu-revoke", connect_timeout=5, **options)
    try:
        reply = await nc.request(CLAIMS_UPDATE, account_jwt.encode(), timeout=5)
    finally:
        await nc.close()
    answer = json.loads(reply.data)
    if "error" in answer:
        raise Unavailable(detail=f"nats-server refused the account update: {answer['error']}")
