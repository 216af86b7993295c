"""Enrollment: a machine trades a one-time token and its public nkey for a NATS user JWT whose
permissions name only its own subjects (`common/auth/permissions.py`). The account's signing key
is read from the auth folder (`TINGYU_NATS_AUTH_DIR`), which only the API and the launcher hold."""

from __future__ import annotations

import logging
import time

from tingyu.api.schemas.enroll import EnrollBody, EnrollView
from tingyu.common import subjects
from tingyu.common.auth import jwt
from tingyu.common.auth.enrollment import token_hash
from tingyu.common.auth.material import AuthDir
from tingyu.common.auth.permissions import machine_permissions
from tingyu.common.bus import Bus
from tingyu.common.errors import EnrollmentRefused, InvalidParameter, Unavailable
from tingyu.common.models.enroll import EnrollRecord, MachineKey
from tingyu.common.names import is_node_uuid
from tingyu.common.settings import PlatformSettings

log = logging.getLogger(__name__)


async def enroll(bus: Bus, settings: PlatformSettings, body: EnrollBody) -> EnrollView:
    """Check the token and the machine, spend one use of the token, record the key, sign the JWT."""
    if not is_node_uuid(body.uuid):
        raise InvalidParameter(detail=f"not a machine uuid: {body.uuid[:64]!r}")
    if not jwt.is_public_key(body.publicKey, "user"):
        raise InvalidParameter(detail="publicKey is not a NATS user public key (U…)")
    auth = AuthDir(settings.auth_dir)
    try:
        account_seed = auth.seed("account")
    except OSError as exc:
        raise Unavailable(detail="this API holds no account signing key (TINGYU_NATS_AUTH_DIR)") from exc
    store = bus.store(subjects.ENROLL)
    machine_key = subjects.machine_key(body.uuid)
    known = await store.get(machine_key)
    if known is not None and known.machine is not None:
        if known.machine.revoked_at > 0:
            raise EnrollmentRefused(detail=f"machine {body.uuid} was revoked; it enrolls with a new uuid")
        if known.machine.public_key != body.publicKey:
            raise EnrollmentRefused(detail=f"machine {body.uuid} is enrolled with another key")
    token_key = subjects.enroll_token_key(token_hash(body.token))
    record, revision = await store.entry(token_key)
    token = record.token if record else None
    if token is None or token.uses_left <= 0:
        raise EnrollmentRefused(detail="unknown or used enrollment token")
    if token.expires_at < time.time():
        raise EnrollmentRefused(detail="the enrollment token has expired")
    spent = token.model_copy(
        update={"uses_left": token.uses_left - 1, "used_by": [*token.used_by, body.uuid]}
    )
    await store.update(token_key, EnrollRecord(token=spent), revision)
    machine = MachineKey(node_uuid=body.uuid, public_key=body.publicKey, enrolled_at=time.time())
    await store.put(machine_key, EnrollRecord(machine=machine))
    log.info("machine %s enrolled with key %s", body.uuid, body.publicKey)
    token_jwt = jwt.user_jwt(account_seed, body.publicKey, body.uuid, machine_permissions(body.uuid))
    return EnrollView(uuid=body.uuid, jwt=token_jwt, area=token.area, operator=token.operator)
