"""NATS JWTs (version 2) and `.creds` files, signed with nkeys.

nats-server's decentralized auth trusts one operator; the operator signs accounts; an account
signs its users. A JWT is `header.claims.signature`, each part base64url without padding, the
signature an ed25519 signature of `header.claims` by the issuer's nkey.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from typing import Any

import nkeys

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
PREFIXES = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}
UNLIMITED = -1


def new_seed(kind: str) -> str:
    """A fresh nkey seed (`SO…`, `SA…`, `SU…`) for an operator, account or user."""
    return bytes(nkeys.encode_seed(os.urandom(32), PREFIXES[kind])).decode()


def public_key(seed: str) -> str:
    """The public key (`O…`, `A…`, `U…`) of a seed."""
    return bytes(nkeys.from_seed(seed.encode()).public_key).decode()


def is_public_key(text: str, kind: str) -> bool:
    """Whether `text` is a well-formed public nkey of `kind` (prefix and checksum)."""
    if len(text) != 56:
        return False
    try:
        raw = base64.b32decode(text)
    except (binascii.Error, ValueError):
        return False
    body, checksum = raw[:-2], raw[-2:]
    expected: int = nkeys.crc16(bytearray(body))
    return body[0] == PREFIXES[kind] and expected.to_bytes(2, "little") == checksum


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(claims: dict[str, Any], issuer_seed: str) -> str:
    """Sign `claims` (iss, iat and jti filled in) with the issuer's seed."""
    claims = {**claims, "iss": public_key(issuer_seed), "iat": int(time.time()), "jti": ""}
    digest = hashlib.new("sha512_256", json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    head = _b64(json.dumps(HEADER).encode()) + "." + _b64(json.dumps(claims, sort_keys=True).encode())
    signature = nkeys.from_seed(issuer_seed.encode()).sign(head.encode())
    return head + "." + _b64(signature)


def decode(token: str) -> dict[str, Any]:
    """The claims of a JWT (the signature is not checked: the server does that)."""
    claims: dict[str, Any] = json.loads(_unb64(token.split(".")[1]))
    return claims


def operator_jwt(seed: str, name: str, system_account: str) -> str:
    """The self-signed operator JWT that nats-server trusts."""
    subject = public_key(seed)
    nats = {"type": "operator", "version": 2, "system_account": system_account}
    return encode({"sub": subject, "name": name, "nats": nats}, seed)


def account_jwt(
    operator_seed: str,
    account_public: str,
    name: str,
    *,
    jetstream: bool,
    revocations: dict[str, int],
    mappings: dict[str, str] | None = None,
) -> str:
    """An account JWT signed by the operator; `revocations` maps user public keys to the time
    before which their JWTs no longer count; `mappings` are the account's subject mappings
    (source -> destination, all of the traffic to the one destination)."""
    limits: dict[str, Any] = {
        "subs": UNLIMITED,
        "data": UNLIMITED,
        "payload": UNLIMITED,
        "imports": UNLIMITED,
        "exports": UNLIMITED,
        "wildcards": True,
        "conn": UNLIMITED,
        "leaf": UNLIMITED,
    }
    if jetstream:
        limits |= {"mem_storage": UNLIMITED, "disk_storage": UNLIMITED, "streams": UNLIMITED}
        limits |= {"consumer": UNLIMITED, "max_ack_pending": UNLIMITED}
    nats: dict[str, Any] = {"type": "account", "version": 2, "limits": limits}
    if revocations:
        nats["revocations"] = dict(revocations)
    if mappings:
        nats["mappings"] = {source: [{"subject": dest, "weight": 100}] for source, dest in mappings.items()}
    return encode({"sub": account_public, "name": name, "nats": nats}, operator_seed)


def user_jwt(account_seed: str, user_public: str, name: str, permissions: dict[str, Any]) -> str:
    """A user JWT signed by its account; `permissions` holds `pub`, `sub` and `resp` as NATS
    spells them (an empty dict allows everything)."""
    nats = {"type": "user", "version": 2, "subs": UNLIMITED, "data": UNLIMITED, "payload": UNLIMITED}
    return encode({"sub": user_public, "name": name, "nats": {**nats, **permissions}}, account_seed)


def creds(user_jwt_text: str, seed: str) -> str:
    """The `.creds` file nats clients read: the user's JWT and its seed."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt_text}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def creds_jwt(creds_text: str) -> str:
    """The user JWT inside a `.creds` file ("" when it holds none)."""
    lines = creds_text.splitlines()
    for number, line in enumerate(lines[:-1]):
        if line.startswith("-----BEGIN NATS USER JWT"):
            return lines[number + 1].strip()
    return ""
