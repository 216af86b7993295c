"""The platform's registry with token auth, against the real docker-registry and the API's token
service (`GET /tingyu/registry/token`): the imager pushes and deletes; a machine (its uuid and NATS
user JWT) pulls and is refused push and delete by the registry itself; a revoked machine, a wrong
password and a stranger get no token, and each refusal is an audit event."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_auth import address, audit_events
from tests.integration.imager.test_registry_auth import chunks, digest, push_image
from tests.support import eventually, machine_creds, registry_http, unique
from tingyu.cli.launcher import Platform
from tingyu.common import subjects
from tingyu.common.auth import jwt
from tingyu.common.auth.enrollment import revoke_machine
from tingyu.common.auth.registry_tokens import SERVICE
from tingyu.common.bus import Bus
from tingyu.common.errors import RegistryError
from tingyu.common.models.audit import AuditEvent
from tingyu.common.models.enroll import EnrollRecord, MachineKey
from tingyu.common.names import new_node_identity
from tingyu.common.settings import PlatformSettings
from tingyu.imager.registry import RegistryClient

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def realm(platform: Platform) -> str:
    return platform.config.registry_realm


async def ask_token(
    platform: Platform, user: str, password: str, scope: str = "", client: str = ""
) -> httpx.Response:
    """The token service's answer to these Basic credentials, from a client address of the test's
    own (its failed attempts then count against no other test)."""
    params = {"service": SERVICE} | ({"scope": scope} if scope else {})
    headers = {"X-Forwarded-For": client or address()}
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(realm(platform), params=params, auth=(user, password), headers=headers)


def claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    found: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return found


def refused(answer: httpx.Response) -> None:
    """401 in the registry's error form (what `docker pull` shows), with our TY code beside it."""
    assert answer.status_code == 401, answer.text
    assert answer.headers["WWW-Authenticate"].startswith("Basic ")
    body = answer.json()
    assert body["errors"][0]["code"] == "UNAUTHORIZED"
    assert body["errors"][0]["message"]
    assert body["code"] == "TY0070"


async def enrolled_machine(bus: Bus, folder: Path) -> tuple[str, str]:
    """A machine enrolled as the API enrolls one (its key in `ty_enroll`): (uuid, its NATS user JWT)."""
    node_uuid, _ = new_node_identity()
    creds, public_key = machine_creds(folder, node_uuid)
    record = MachineKey(node_uuid=node_uuid, public_key=public_key, enrolled_at=time.time())
    await bus.store(subjects.ENROLL).put(subjects.machine_key(node_uuid), EnrollRecord(machine=record))
    return node_uuid, jwt.creds_jwt(creds.read_text())


async def imager_pushed(platform: Platform) -> tuple[str, str]:
    """(repository, manifest digest) of a small image the imager's credential pushed."""
    name = f"tytest/{unique('reg')}"
    user, password = platform.registry_credentials("imager")
    client = RegistryClient(
        PlatformSettings(
            registry_url=f"http://{platform.config.registry}", registry_user=user, registry_password=password
        )
    )
    try:
        return name, await push_image(client, name, "1")
    finally:
        await client.close()


async def test_the_registry_sends_clients_to_the_api_for_tokens(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"http://{platform.config.registry}/v2/tytest/anyone/manifests/1")
    assert answer.status_code == 401
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer realm="{realm(platform)}"')
    assert f'service="{SERVICE}"' in challenge


async def test_imager_gets_every_action_it_asks_for(platform: Platform) -> None:
    name, pushed = await imager_pushed(platform)
    user, password = platform.registry_credentials("imager")
    answer = await ask_token(platform, user, password, f"repository:{name}:pull,push,delete")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] > 0
    granted = claims(body["token"])
    assert granted["sub"] == "imager"
    assert granted["access"] == [{"type": "repository", "name": name, "actions": ["pull", "push", "delete"]}]
    async with registry_http(platform) as registry:
        assert (await registry.delete(f"/v2/{name}/manifests/{pushed}")).status_code == 202
        gone = await registry.head(f"/v2/{name}/manifests/{pushed}", headers={"Accept": MANIFEST_V2})
    assert gone.status_code == 404


async def test_machine_pulls_and_the_registry_refuses_its_push_and_delete(
    platform: Platform, bus: Bus, tmp_path: Path
) -> None:
    name, pushed = await imager_pushed(platform)
    node_uuid, machine_jwt = await enrolled_machine(bus, tmp_path)

    # Asked for everything, a machine is granted pull and nothing else.
    answer = await ask_token(platform, node_uuid, machine_jwt, f"repository:{name}:pull,push,delete")
    assert answer.status_code == 200, answer.text
    granted = claims(answer.json()["token"])
    assert granted["sub"] == node_uuid
    assert granted["access"] == [{"type": "repository", "name": name, "actions": ["pull"]}]
    bearer = {"Authorization": f"Bearer {answer.json()['token']}"}

    base = f"http://{platform.config.registry}/v2/{name}"
    async with httpx.AsyncClient(timeout=10) as http:
        pulled = await http.get(f"{base}/manifests/1", headers=bearer | {"Accept": MANIFEST_V2})
        assert pulled.status_code == 200
        assert pulled.headers["Docker-Content-Digest"] == pushed
        # The registry itself refuses what the token does not grant: an upload and a delete.
        upload = await http.post(f"{base}/blobs/uploads/", headers=bearer)
        delete = await http.delete(f"{base}/manifests/{pushed}", headers=bearer)
    for denied in (upload, delete):
        assert denied.status_code in (401, 403), denied.text
        assert denied.json()["errors"][0]["code"] in ("UNAUTHORIZED", "DENIED")
        assert 'error="insufficient_scope"' in denied.headers.get("WWW-Authenticate", "")

    # The same through the registry client's own token flow: reads work, writes are refused.
    client = RegistryClient(
        PlatformSettings(
            registry_url=f"http://{platform.config.registry}",
            registry_user=node_uuid,
            registry_password=machine_jwt,
        )
    )
    blob = b"a machine must not write this"
    try:
        assert await client.manifest_digest(name, "1") == pushed
        with pytest.raises(RegistryError):
            await client.push_blob(name, digest(blob), len(blob), chunks(blob))
        with pytest.raises(RegistryError):
            await client.delete_manifest(name, pushed)
    finally:
        await client.close()
    async with registry_http(platform) as registry:
        kept = await registry.head(f"/v2/{name}/manifests/{pushed}", headers={"Accept": MANIFEST_V2})
        absent = await registry.head(f"/v2/{name}/blobs/{digest(blob)}")
    assert kept.status_code == 200
    assert absent.status_code == 404


async def test_platform_agent_pulls_with_its_own_enrolled_credential(platform: Platform) -> None:
    name, pushed = await imager_pushed(platform)
    async with registry_http(platform, "agent") as registry:
        found = await registry.head(f"/v2/{name}/manifests/1", headers={"Accept": MANIFEST_V2})
        denied = await registry.delete(f"/v2/{name}/manifests/{pushed}")
    assert found.status_code == 200
    assert found.headers["Docker-Content-Digest"] == pushed
    assert denied.status_code in (401, 403)


async def test_revoked_machine_gets_no_token(platform: Platform, bus: Bus, tmp_path: Path) -> None:
    node_uuid, machine_jwt = await enrolled_machine(bus, tmp_path)
    scope = "repository:tytest/anything:pull"
    assert (await ask_token(platform, node_uuid, machine_jwt, scope)).status_code == 200

    await revoke_machine(bus, PlatformSettings(nats_url=platform.config.nats_url), node_uuid)

    refused(await ask_token(platform, node_uuid, machine_jwt, scope))


async def test_wrong_credentials_get_no_token_and_are_audited(
    platform: Platform, bus: Bus, tmp_path: Path
) -> None:
    node_uuid, machine_jwt = await enrolled_machine(bus, tmp_path)
    other_uuid, other_jwt = await enrolled_machine(bus, tmp_path)
    scope = "repository:tytest/anything:pull"
    user, password = platform.registry_credentials("imager")
    # A stranger's JWT: signed by an account the platform does not trust, for this very uuid.
    stranger_account = jwt.new_seed("account")
    stranger = jwt.user_jwt(stranger_account, jwt.public_key(jwt.new_seed("user")), node_uuid, {})
    wrong = [
        (user, password + "x"),
        (node_uuid, machine_jwt[:-4] + "AAAA"),  # a broken signature
        (node_uuid, other_jwt),  # another machine's credential
        (other_uuid[:-1] + "0", machine_jwt),  # a uuid that never enrolled
        (node_uuid, stranger),
        ("agent", "anything"),
    ]
    for who, secret in wrong:
        refused(await ask_token(platform, who, secret, scope))
    async with httpx.AsyncClient(timeout=10) as http:
        anonymous = {"X-Forwarded-For": address()}
        refused(
            await http.get(realm(platform), params={"service": SERVICE, "scope": scope}, headers=anonymous)
        )

    async def audited() -> bool:
        events = await audit_events(bus, "registry.token")
        actors = {e.actor for e in events if e.status == 401}
        return {node_uuid, user, "agent"} <= actors

    assert await eventually(audited, timeout=15)


async def test_too_many_wrong_credentials_from_one_address_are_refused_429(
    platform: Platform, bus: Bus, tmp_path: Path
) -> None:
    node_uuid, machine_jwt = await enrolled_machine(bus, tmp_path)
    flooder, bystander = address(), address()
    scope = "repository:tytest/anything:pull"
    for _ in range(20):  # TINGYU_API_AUTH_MAX_FAILURES
        refused(await ask_token(platform, node_uuid, "wrong", scope, flooder))
    for _ in range(3):  # even the right credential, until the window passes
        blocked = await ask_token(platform, node_uuid, machine_jwt, scope, flooder)
        assert blocked.status_code == 429, blocked.text
        assert blocked.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert blocked.json()["code"] == "TY0072"
    assert (await ask_token(platform, node_uuid, machine_jwt, scope, bystander)).status_code == 200

    async def flood_audited() -> list[AuditEvent]:
        events = await audit_events(bus, "registry.token")
        return [e for e in events if e.client == flooder and e.status == 429]

    await eventually(flood_audited, timeout=15)
    assert len(await flood_audited()) == 1  # a flood of refusals is audited once per block
