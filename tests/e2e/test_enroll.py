"""Enrollment through the API and identity from the subject, against the running platform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import eventually
from tingyu.agent.config import AgentSettings
from tingyu.agent.enroll import ensure_enrolled, own_seed
from tingyu.agent.identity import load_or_create
from tingyu.cli.dead import letters
from tingyu.cli.launcher import Platform
from tingyu.common import subjects, timefmt
from tingyu.common.auth import jwt
from tingyu.common.auth.enrollment import new_token
from tingyu.common.auth.permissions import creds_are_current, machine_permissions
from tingyu.common.bus import Bus
from tingyu.common.models.containers import NodeReport
from tingyu.common.names import new_node_identity
from tingyu.common.settings import PlatformSettings

pytestmark = pytest.mark.e2e


async def enroll(api: httpx.AsyncClient, token: str, uuid: str, public_key: str) -> Any:
    body = {"token": token, "uuid": uuid, "publicKey": public_key}
    return (await api.post("/node/enroll", json=body)).json()


def user_key() -> str:
    return jwt.public_key(jwt.new_seed("user"))


async def test_enrollment_signs_a_jwt_for_the_machine_alone(api: httpx.AsyncClient, bus: Bus) -> None:
    token = await new_token(bus, "南京", "移动")
    uuid, _ = new_node_identity()
    key = user_key()

    answer = await enroll(api, token, uuid, key)

    assert answer["code"] == 200, answer
    assert (answer["data"]["area"], answer["data"]["operator"]) == ("南京", "移动")
    claims = jwt.decode(answer["data"]["jwt"])
    assert (claims["sub"], claims["name"]) == (key, uuid)
    assert set(claims["nats"]["pub"]["allow"]) >= {subjects.heartbeat(uuid), subjects.report(uuid)}
    assert claims["nats"]["sub"]["allow"] == [subjects.agent_all(uuid), f"_INBOX.{uuid}.>"]
    stored = await bus.store(subjects.ENROLL).get(subjects.machine_key(uuid))
    assert stored is not None
    assert stored.machine is not None
    assert stored.machine.public_key == key


async def test_enrollment_refusals(api: httpx.AsyncClient, bus: Bus) -> None:
    token = await new_token(bus)
    uuid, _ = new_node_identity()
    key = user_key()
    assert (await enroll(api, "tye_unknown", uuid, key))["code"] == "TY0060"
    assert (await enroll(api, token, uuid, "not-a-key"))["code"] == "TY0003"
    assert (await enroll(api, token, "tingyu-nope", key))["code"] == "TY0003"
    assert (await enroll(api, token, uuid, key))["code"] == 200
    used = await enroll(api, token, uuid, key)
    assert used["code"] == "TY0060"
    assert "used" in used["detail"]
    taken = await enroll(api, await new_token(bus), uuid, user_key())
    assert taken["code"] == "TY0060"
    assert "another key" in taken["detail"]
    expired = await enroll(api, await new_token(bus, ttl_s=-1.0), new_node_identity()[0], user_key())
    assert expired["code"] == "TY0060"
    assert "expired" in expired["detail"]


async def test_report_about_another_machine_is_refused(platform: object, bus: Bus) -> None:
    """Identity from the subject: a report published on machine A's subject about machine B is
    dead-lettered by the deployer, and B's observed state is never written."""
    a, _ = new_node_identity()
    b, _ = new_node_identity()
    forged = NodeReport(node_uuid=b, containers={}, reported_at=timefmt.now(), seq=1)
    await bus.publish(subjects.report(a), forged)

    async def parked() -> bool:
        found = await letters(bus, subjects.DEPLOYER_REPORTS.durable)
        return any(b in letter.reason and letter.subject == subjects.report(a) for _, letter in found)

    await eventually(parked, timeout=30)
    assert await bus.store(subjects.REPORTED).get(b) is None


async def test_an_agent_with_a_credential_for_older_permissions_enrolls_again_with_its_key(
    platform: Platform, bus: Bus, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    state.mkdir()
    identity = load_or_create(state)
    seed = own_seed(state)
    first = await ensure_enrolled(
        settings_for(platform, state, await new_token(bus, "南京", "移动")), identity
    )
    assert creds_are_current(first.creds)

    # The same machine's credential as it was signed before one desired-state key per deployment.
    older = machine_permissions(identity.uuid)
    older["pub"]["allow"] = [a for a in older["pub"]["allow"] if "CONSUMER" not in a]
    account = platform.config.auth.seed("account")
    first.creds.write_text(jwt.creds(jwt.user_jwt(account, jwt.public_key(seed), identity.uuid, older), seed))
    assert not creds_are_current(first.creds)

    kept = await ensure_enrolled(settings_for(platform, state, ""), identity)  # no token: kept as it is
    assert not creds_are_current(kept.creds)
    again = await ensure_enrolled(
        settings_for(platform, state, await new_token(bus, "南京", "移动")), identity
    )
    assert creds_are_current(again.creds)
    assert own_seed(state) == seed  # the same key: the machine stays who it is


def settings_for(platform: Platform, state: Path, token: str) -> AgentSettings:
    return AgentSettings(
        platform=PlatformSettings(state_dir=state),
        enroll_url=platform.config.api_url,
        enroll_token=token,
    )
