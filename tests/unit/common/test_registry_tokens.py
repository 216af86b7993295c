"""Registry token rules with nothing running: scopes, grants, the signed JWT's form, a machine's
NATS JWT check, and the imager client's token cache per scope."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tingyu.common.auth import jwt
from tingyu.common.auth.registry_tokens import (
    ALL_ACTIONS,
    PULL_ONLY,
    Access,
    TokenSigner,
    ensure_signing_material,
    grant,
    parse_scopes,
    verified_machine_key,
)
from tingyu.imager.registry import ChallengeAuth, normal_scope, scope_of


def _part(text: str) -> dict[str, object]:
    found: dict[str, object] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return found


def test_scopes_parse_with_ports_and_several_per_parameter() -> None:
    assert parse_scopes(["repository:127.0.0.1:5000/web:pull,push", "registry:catalog:* bad"]) == [
        Access("repository", "127.0.0.1:5000/web", ("pull", "push")),
        Access("registry", "catalog", ("*",)),
    ]
    assert parse_scopes(["", "nothing"]) == []


def test_a_machine_is_granted_pull_whatever_it_asks() -> None:
    asked = parse_scopes(["repository:web:pull,push,delete", "repository:db:*", "repository:x:push"])
    assert grant(asked, PULL_ONLY) == [
        Access("repository", "web", ("pull",)),
        Access("repository", "db", ("pull",)),
    ]
    assert grant(asked, ALL_ACTIONS)[1] == Access("repository", "db", ALL_ACTIONS)
    assert grant(parse_scopes(["registry:catalog:*"]), ALL_ACTIONS) == []


def test_tokens_carry_the_certificate_and_verify_with_its_key(tmp_path: Path) -> None:
    key_file, cert_file = ensure_signing_material(tmp_path / "token")
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert ensure_signing_material(tmp_path / "token") == (key_file, cert_file)  # made once
    signer = TokenSigner.from_files(key_file, cert_file)
    issued = signer.sign("imager", [Access("repository", "web", ("pull",))], 300, now=1000.0)
    head, body, signature = issued.token.split(".")
    header, claims = _part(head), _part(body)
    assert header["alg"] == "RS256"
    der = base64.b64decode(str(header["x5c"][0]))  # type: ignore[index]
    cert = x509.load_der_x509_certificate(der)
    assert cert == x509.load_pem_x509_certificate(cert_file.read_bytes())
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    public.verify(raw, f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    assert (claims["iss"], claims["aud"], claims["sub"]) == ("tingyu-api", "tingyu-registry", "imager")
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (1000, 990, 1300)
    assert claims["access"] == [{"type": "repository", "name": "web", "actions": ["pull"]}]


def test_only_the_accounts_jwt_for_that_uuid_is_a_machine_credential() -> None:
    account, user = jwt.new_seed("account"), jwt.new_seed("user")
    token = jwt.user_jwt(account, jwt.public_key(user), "tingyu-a", {})
    assert verified_machine_key(token, jwt.public_key(account), "tingyu-a") == jwt.public_key(user)
    assert verified_machine_key(token, jwt.public_key(account), "tingyu-b") is None
    assert verified_machine_key(token, jwt.public_key(jwt.new_seed("account")), "tingyu-a") is None
    forged = jwt.user_jwt(jwt.new_seed("account"), jwt.public_key(user), "tingyu-a", {})
    head, body, _ = token.split(".")
    assert (
        verified_machine_key(f"{head}.{body}.{forged.split('.')[2]}", jwt.public_key(account), "tingyu-a")
        is None
    )
    assert verified_machine_key("not.a.jwt", jwt.public_key(account), "tingyu-a") is None


def test_request_scopes_match_the_registrys_challenges() -> None:
    assert scope_of("HEAD", "/v2/tytest/web/manifests/1") == "repository:tytest/web:pull"
    assert scope_of("POST", "/v2/tytest/web/blobs/uploads/") == "repository:tytest/web:pull,push"
    assert scope_of("PUT", "/v2/tytest/web/blobs/uploads/abc") == "repository:tytest/web:pull,push"
    assert scope_of("DELETE", "/v2/tytest/web/manifests/sha256:00") == "repository:tytest/web:delete"
    assert scope_of("GET", "/v2/") == ""
    assert normal_scope("repository:a:5000/web:push,pull") == "repository:a:5000/web:pull,push"


async def test_tokens_are_kept_per_scope_until_shortly_before_they_expire() -> None:
    now = [0.0]
    served: list[str] = []

    def token_service(request: httpx.Request) -> httpx.Response:
        served.append(request.url.params.get("scope", ""))
        return httpx.Response(200, json={"token": f"t{len(served)}", "expires_in": 60})

    async with httpx.AsyncClient(transport=httpx.MockTransport(token_service)) as tokens:
        auth = ChallengeAuth("imager", "secret", tokens, clock=lambda: now[0])
        challenge = 'Bearer realm="http://api/token",service="reg",scope="repository:web:push,pull"'
        assert await auth._answer(challenge) == "Bearer t1"
        assert served == ["repository:web:pull,push"]
        assert auth.known(scope_of("PUT", "/v2/web/blobs/uploads/x")) == "Bearer t1"
        assert auth.known(scope_of("DELETE", "/v2/web/manifests/sha256:0")) == ""
        now[0] = 49.0
        assert auth.known("repository:web:pull,push") == "Bearer t1"
        now[0] = 50.0  # ten seconds before its end, a token is not used again
        assert auth.known("repository:web:pull,push") == ""
