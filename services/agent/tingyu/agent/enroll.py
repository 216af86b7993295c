"""The machine's NATS credential: its own nkey pair, made here and never sent anywhere, and the user
JWT the API signs for it at enrollment (`POST /tingyu/node/enroll` with a one-time token).

Kept in the agent's state folder, mode 0600: `nkey.seed`, `nats.creds` and `enrollment.json` (what
the token preset: area and ISP, used when the agent's own settings leave them empty). A machine
that holds a current credential never enrolls again; one whose credential was signed for older
permissions enrolls again with the same key when it is given a token; one that was revoked must
get a new identity.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tingyu.agent.config import AgentSettings
from tingyu.agent.identity import Identity
from tingyu.agent.statefile import read_json, write_json
from tingyu.common.auth import jwt
from tingyu.common.auth.material import write_secret
from tingyu.common.auth.permissions import creds_are_current, machine_inbox
from tingyu.common.settings import PlatformSettings

log = logging.getLogger(__name__)

ATTEMPTS = 60  # the API may still be starting next to the agent


class EnrollmentFailed(RuntimeError):
    """The machine has no credential and could not get one; the message says why."""


@dataclass(frozen=True)
class Enrollment:
    """Where the credential is and what the token preset."""

    creds: Path
    area: str = ""
    operator: str = ""


def creds_path(state_dir: Path) -> Path:
    return state_dir / "nats.creds"


def own_seed(state_dir: Path) -> str:
    """This machine's nkey seed, made once."""
    path = state_dir / "nkey.seed"
    if not path.exists():
        write_secret(path, jwt.new_seed("user"))
    return path.read_text().strip()


async def ensure_enrolled(settings: AgentSettings, identity: Identity) -> Enrollment:
    """The stored credential, or a new one from the API."""
    creds = creds_path(settings.state_dir)
    if creds.exists() and not creds_are_current(creds):
        if settings.enroll_token:
            log.warning(
                "machine %s: its credential predates today's permissions; enrolling again", identity.uuid
            )
        else:
            log.warning(
                "machine %s: its credential predates today's permissions (e.g. one desired-state key per "
                "deployment) and may be refused; set TINGYU_AGENT_ENROLL_TOKEN to enroll again",
                identity.uuid,
            )
    if creds.exists() and (creds_are_current(creds) or not settings.enroll_token):
        preset = read_json(settings.state_dir / "enrollment.json") or {}
        return Enrollment(creds, str(preset.get("area", "")), str(preset.get("operator", "")))
    if not settings.enroll_token:
        raise EnrollmentFailed(
            f"machine {identity.uuid} has no NATS credential ({creds}): set TINGYU_AGENT_ENROLL_TOKEN "
            "to a token from `tingyu node enroll-token`"
        )
    seed = own_seed(settings.state_dir)
    body = {"token": settings.enroll_token, "uuid": identity.uuid, "publicKey": jwt.public_key(seed)}
    answer = await _post(settings, body)
    if answer.get("code") != 200:
        raise EnrollmentFailed(
            f"enrollment refused: {answer.get('msg')} {answer.get('detail') or ''}".strip()
        )
    data = answer["data"]
    write_secret(creds, jwt.creds(data["jwt"], seed))
    write_json(settings.state_dir / "enrollment.json", {"area": data["area"], "operator": data["operator"]})
    log.info("machine %s enrolled", identity.uuid)
    return Enrollment(creds, data["area"], data["operator"])


async def _post(settings: AgentSettings, body: dict[str, str]) -> dict[str, Any]:
    url = settings.enroll_url.rstrip("/") + "/node/enroll"
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=settings.enroll_ca or None)
    async with httpx.AsyncClient(timeout=10.0, verify=verify) as client:
        for attempt in range(ATTEMPTS):
            try:
                response = await client.post(url, json=body)
                answer: dict[str, Any] = response.json()
                return answer
            except (httpx.TransportError, ValueError) as exc:
                if attempt == ATTEMPTS - 1:
                    raise EnrollmentFailed(f"enrollment at {url} failed: {exc!r}") from exc
                log.warning("enrollment at %s not possible yet (%r); retrying", url, exc)
                await asyncio.sleep(1.0)
    raise EnrollmentFailed(f"enrollment at {url} failed")


def machine_platform(platform: PlatformSettings, enrollment: Enrollment, node_uuid: str) -> PlatformSettings:
    """The platform settings with this machine's own credential and inbox. The same credential
    pulls from the platform's registry (user = the uuid, password = the NATS user JWT; its token
    service grants a machine `pull` only), unless TINGYU_REGISTRY_USER names another (a production
    registry's pull-only robot account)."""
    update: dict[str, Any] = {
        "nats_creds": str(enrollment.creds),
        "nats_inbox_prefix": machine_inbox(node_uuid),
    }
    if not platform.registry_user:
        update |= {
            "registry_user": node_uuid,
            "registry_password": jwt.creds_jwt(enrollment.creds.read_text()),
        }
    return platform.model_copy(update=update)
