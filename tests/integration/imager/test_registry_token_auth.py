"""The imager's registry client against a registry with Docker's token auth (as Harbor and ACR do):
docker-registry answers 401 with a `Bearer realm=…,service=…,scope=…` challenge, a token server
of the test's own checks Basic credentials and issues a JWT signed with the key whose certificate
is the registry's `rootcertbundle`, and the client retries with `Authorization: Bearer <token>`."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.integration.imager.test_registry_auth import chunks, digest, push_image, registry_serving
from tingyu.common.auth.registry_tokens import TokenSigner, ensure_signing_material, parse_scopes
from tingyu.common.errors import RegistryError
from tingyu.common.settings import PlatformSettings
from tingyu.imager.registry import RegistryClient

USER, PASSWORD = "robot$imager", "t0ken-pass"
SERVICE, ISSUER = "tingyu-test-registry", "tingyu-test-token-issuer"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass
class TokenIssuer:
    """What the token server knows: the platform's signer with this test's names, and its certificate
    file; what it was asked, in order."""

    signer: TokenSigner
    cert_file: Path
    asked: list[tuple[str, str]] = field(default_factory=list)  # (user or "", scope or "")

    @classmethod
    def generate(cls, folder: Path) -> TokenIssuer:
        key_file, cert_file = ensure_signing_material(folder)
        return cls(TokenSigner.from_files(key_file, cert_file, service=SERVICE, issuer=ISSUER), cert_file)

    def token(self, user: str, scope: str) -> str:
        """A JWT granting every action asked for in `scope` (the test's server grants all)."""
        return self.signer.sign(user, parse_scopes([scope]) if scope else [], ttl_s=300).token


def serve_tokens(issuer: TokenIssuer) -> ThreadingHTTPServer:
    """GET /token?service=…&scope=… with Basic USER/PASSWORD → {"token": …}; anything else → 401."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            scope = query.get("scope", [""])[0]
            scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
            user, _, password = base64.b64decode(encoded or b"").decode().partition(":")
            issuer.asked.append((user, scope))
            granted = scheme == "Basic" and (user, password) == (USER, PASSWORD)
            if not granted or query.get("service") != [SERVICE]:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"token": issuer.token(user, scope), "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="token-server", daemon=True).start()
    return server


@dataclass
class TokenRegistry:
    url: str
    realm: str
    issuer: TokenIssuer

    async def head(self, path: str, scope: str = "") -> httpx.Response:
        """HEAD on the registry, with a token for `scope` fetched from the realm (none without one)."""
        headers = {"Accept": MANIFEST_V2}
        async with httpx.AsyncClient(timeout=10) as http:
            if scope:
                answer = await http.get(
                    self.realm, params={"service": SERVICE, "scope": scope}, auth=(USER, PASSWORD)
                )
                answer.raise_for_status()
                headers["Authorization"] = f"Bearer {answer.json()['token']}"
            return await http.head(f"{self.url}{path}", headers=headers)


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    """docker-registry on a free port with `auth: token`, trusting the token server's certificate."""
    root: Path = tmp_path_factory.mktemp("registry-token")
    issuer = TokenIssuer.generate(root / "token")
    server = serve_tokens(issuer)
    realm = f"http://127.0.0.1:{server.server_address[1]}/token"
    auth = (
        f"token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
        f"    rootcertbundle: {issuer.cert_file}\n"
    )
    with registry_serving(root, auth) as url:
        yield TokenRegistry(url, realm, issuer)
        server.shutdown()
        server.server_close()


def client_for(registry: TokenRegistry, password: str) -> RegistryClient:
    return RegistryClient(
        PlatformSettings(registry_url=registry.url, registry_user=USER, registry_password=password)
    )


@pytest.fixture
async def client(token_registry: TokenRegistry) -> AsyncIterator[RegistryClient]:
    registry = client_for(token_registry, PASSWORD)
    yield registry
    await registry.close()


def test_anonymous_requests_get_a_bearer_challenge(token_registry: TokenRegistry) -> None:
    answer = httpx.get(f"{token_registry.url}/v2/tytest/anyone/manifests/1")
    assert answer.status_code == 401
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer realm="{token_registry.realm}"')
    assert f'service="{SERVICE}"' in challenge
    assert 'scope="repository:tytest/anyone:pull"' in challenge


async def test_push_fetches_a_token_and_the_manifest_is_stored(
    client: RegistryClient, token_registry: TokenRegistry
) -> None:
    name = f"tytest/bearer-{uuid.uuid4().hex[:8]}"
    asked_before = len(token_registry.issuer.asked)
    pushed = await push_image(client, name, "1")
    # one token per new scope, each reused until the registry challenges again
    assert token_registry.issuer.asked[asked_before:] == [
        (USER, ""),
        (USER, f"repository:{name}:pull"),
        (USER, f"repository:{name}:pull,push"),
    ]
    assert await client.manifest_digest(name, "1") == pushed

    manifest = f"/v2/{name}/manifests/1"
    assert (await token_registry.head(manifest)).status_code == 401
    found = await token_registry.head(manifest, f"repository:{name}:pull")
    assert found.status_code == 200
    assert found.headers["Docker-Content-Digest"] == pushed


async def test_delete_asks_for_the_delete_action(
    client: RegistryClient, token_registry: TokenRegistry
) -> None:
    name = f"tytest/bearer-{uuid.uuid4().hex[:8]}"
    pushed = await push_image(client, name, "1")
    assert await client.delete_manifest(name, pushed)
    assert token_registry.issuer.asked[-1] == (USER, f"repository:{name}:delete")
    gone = await token_registry.head(f"/v2/{name}/manifests/{pushed}", f"repository:{name}:pull")
    assert gone.status_code == 404


async def test_wrong_password_is_a_registry_error_and_nothing_is_stored(
    token_registry: TokenRegistry,
) -> None:
    name = f"tytest/bearer-{uuid.uuid4().hex[:8]}"
    blob = b"bytes that must not land"
    wrong = client_for(token_registry, "not-the-password")
    try:
        with pytest.raises(RegistryError) as refused:
            await wrong.ping()
        assert refused.value.code == "TY0025"
        assert str(refused.value.detail).startswith(f"token request to {token_registry.realm} answered 401")
        with pytest.raises(RegistryError):
            await wrong.push_blob(name, digest(blob), len(blob), chunks(blob))
    finally:
        await wrong.close()
    assert token_registry.issuer.asked[-1] == (USER, f"repository:{name}:pull,push")
    absent = await token_registry.head(f"/v2/{name}/blobs/{digest(blob)}", f"repository:{name}:pull")
    assert absent.status_code == 404
