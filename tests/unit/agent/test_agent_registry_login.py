"""The agent's registry login: its own uuid and NATS user JWT, unless a registry user is configured."""

from __future__ import annotations

from pathlib import Path

from tingyu.agent.enroll import Enrollment, machine_platform
from tingyu.common.auth import jwt
from tingyu.common.names import new_node_identity
from tingyu.common.settings import PlatformSettings


def _enrolled(folder: Path, node_uuid: str) -> tuple[Enrollment, str]:
    seed = jwt.new_seed("user")
    token = jwt.user_jwt(jwt.new_seed("account"), jwt.public_key(seed), node_uuid, {})
    creds = folder / "nats.creds"
    creds.write_text(jwt.creds(token, seed))
    return Enrollment(creds), token


def test_a_machine_pulls_as_itself(tmp_path: Path) -> None:
    node_uuid, _ = new_node_identity()
    enrollment, token = _enrolled(tmp_path, node_uuid)
    platform = machine_platform(PlatformSettings(), enrollment, node_uuid)
    assert (platform.registry_user, platform.registry_password) == (node_uuid, token)
    assert platform.nats_creds == str(enrollment.creds)


def test_a_configured_registry_user_wins(tmp_path: Path) -> None:
    node_uuid, _ = new_node_identity()
    enrollment, _ = _enrolled(tmp_path, node_uuid)
    given = PlatformSettings(registry_user="robot$pcdn-pull", registry_password="robot-secret")
    platform = machine_platform(given, enrollment, node_uuid)
    assert (platform.registry_user, platform.registry_password) == ("robot$pcdn-pull", "robot-secret")
