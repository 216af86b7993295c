"""Bearer tokens for the platform's registry (CNCF Distribution's `auth: token`), and who gets which.

The registry trusts one self-signed certificate (its `rootcertbundle`); the API holds the key and
signs short-lived RS256 JWTs that carry the certificate as `x5c` and list what the bearer may do
(`access`: `repository:<name>:pull,push,delete`). Made once under `var/registry/token` by the
launcher, mode 0600 for the key.

Three kinds of caller get tokens: the imager (its service secret) may pull, push and delete on every
repository; the kubernetes agent (its own secret, handed to the cluster's kubelets as an image pull
Secret) and an enrolled machine (its node uuid and NATS user JWT) may only pull, whatever they ask.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from tingyu.common.auth.material import write_secret

SERVICE = "tingyu-registry"  # the registry's `auth.token.service`, the tokens' audience
ISSUER = "tingyu-api"  # the registry's `auth.token.issuer`
IMAGER = "imager"  # the imager's user name at the token service
KUBE = "kube"  # the kubernetes agent's: the pull Secret its Deployments name
VALID_DAYS = 3650
ALL_ACTIONS = ("pull", "push", "delete")
PULL_ONLY = ("pull",)
MAX_SCOPES = 32  # scopes of one token request; Docker asks for one or two


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ensure_signing_material(folder: Path) -> tuple[Path, Path]:
    """(key.pem, cert.pem) under `folder`, made once: an RSA key and a self-signed certificate
    that the registry's `rootcertbundle` names."""
    key_file, cert_file = folder / "key.pem", folder / "cert.pem"
    if key_file.exists() and cert_file.exists():
        return key_file, cert_file
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tingyu"),
            x509.NameAttribute(NameOID.COMMON_NAME, "tingyu registry token issuer"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        # Distribution verifies the `x5c` chain against its bundle: the certificate is its own root.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_secret(key_file, pem.decode())
    cert_file.write_text(cert.public_bytes(serialization.Encoding.PEM).decode())
    return key_file, cert_file


@dataclass(frozen=True)
class Access:
    """One entry of a token's `access` claim (and of a request's `scope`)."""

    type: str
    name: str
    actions: tuple[str, ...]

    def claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def parse_scopes(scopes: list[str]) -> list[Access]:
    """`repository:tingyu/web:pull,push` (one per `scope` parameter; Docker may also join several
    with spaces) -> Access entries, the first MAX_SCOPES of them. A repository name may hold a
    port's colon, so the actions are what follows the last colon. Malformed scopes are dropped:
    they grant nothing."""
    found: list[Access] = []
    for scope in [part for text in scopes for part in text.split()][:MAX_SCOPES]:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind and name and actions:
            found.append(Access(kind, name, tuple(a for a in actions.split(",") if a)))
    return found


def grant(asked: list[Access], allowed: tuple[str, ...]) -> list[Access]:
    """What a caller allowed `allowed` gets of `asked`: repository scopes only, each with the asked
    actions it may do (`*` stands for all of them); a scope left with nothing is dropped."""
    granted = []
    for access in asked:
        if access.type != "repository":
            continue
        wanted = ALL_ACTIONS if "*" in access.actions else access.actions
        actions = tuple(a for a in dict.fromkeys(wanted) if a in allowed)
        if actions:
            granted.append(Access(access.type, access.name, actions))
    return granted


@dataclass(frozen=True)
class Issued:
    token: str
    expires_in: int
    issued_at: float


class TokenSigner:
    """Signs registry tokens with the key whose certificate the registry trusts."""

    def __init__(
        self, key_pem: bytes, cert_pem: bytes, *, service: str = SERVICE, issuer: str = ISSUER
    ) -> None:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the registry token key must be an RSA key")
        self.key = key
        cert = x509.load_pem_x509_certificate(cert_pem)
        self.x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.service = service
        self.issuer = issuer

    @classmethod
    def from_files(cls, key_file: Path, cert_file: Path, **names: str) -> TokenSigner:
        return cls(key_file.read_bytes(), cert_file.read_bytes(), **names)

    def sign(self, subject: str, access: list[Access], ttl_s: int, now: float | None = None) -> Issued:
        """A JWT for `subject` granting `access` for `ttl_s` seconds (valid from a little earlier,
        so that a registry whose clock is slightly behind accepts it)."""
        issued = time.time() if now is None else now
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": int(issued) + ttl_s,
            "nbf": int(issued) - 10,
            "iat": int(issued),
            "jti": uuid.uuid4().hex,
            "access": [entry.claim() for entry in access],
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": self.x5c}
        signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return Issued(f"{signed}.{_b64url(signature)}", ttl_s, issued)


def verified_machine_key(token: str, account_public: str, node_uuid: str) -> str | None:
    """The user public key of a machine's NATS user JWT when the account signed it for `node_uuid`
    (enrollment names the user after the machine's uuid); None for anything else. Whether that key
    is still the machine's and not revoked is for the caller to check."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(_unb64url(parts[1]))
        signature = _unb64url(parts[2])
        if not isinstance(claims, dict) or claims.get("iss") != account_public:
            return None
        verifier = ed25519.Ed25519PublicKey.from_public_bytes(base64.b32decode(account_public)[1:-2])
        verifier.verify(signature, f"{parts[0]}.{parts[1]}".encode())
    except (ValueError, binascii.Error, InvalidSignature):
        return None
    nats = claims.get("nats")
    if not isinstance(nats, dict) or nats.get("type") != "user" or claims.get("name") != node_uuid:
        return None
    expires = claims.get("exp")
    if isinstance(expires, int | float) and expires < time.time():
        return None
    subject = claims.get("sub")
    return subject if isinstance(subject, str) and subject else None
