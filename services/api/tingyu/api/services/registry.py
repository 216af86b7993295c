"""The registry's token service: who the Basic credentials are and what they may do in the registry.

The imager (user `imager`, its service secret) may pull, push and delete on every repository. The
kubernetes agent (user `kube`, its own secret, which it hands to the cluster as an image pull Secret)
may only pull. A machine (user = its node uuid, password = the NATS user JWT enrollment gave it) may
only pull: the
JWT must be signed by the account for that uuid, be the key `ty_enroll` holds for the machine, and
the machine must not be revoked. Anything else is refused (401), and counts as a failed attempt of
the client's address, as at the API's own gate.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import logging
import math
from dataclasses import dataclass

from starlette.requests import Request

from tingyu.api.auth import FailureLimiter
from tingyu.api.config import ApiSettings
from tingyu.api.schemas.registry import RegistryToken
from tingyu.common import subjects
from tingyu.common.auth.material import AuthDir
from tingyu.common.auth.registry_tokens import (
    ALL_ACTIONS,
    IMAGER,
    KUBE,
    PULL_ONLY,
    TokenSigner,
    grant,
    parse_scopes,
    verified_machine_key,
)
from tingyu.common.bus import Bus
from tingyu.common.errors import TooManyFailures, Unauthenticated, Unavailable
from tingyu.common.names import is_node_uuid

log = logging.getLogger(__name__)

MAX_CREDENTIAL = 8192  # bytes of a Basic header; a machine's JWT is about one kilobyte


@dataclass(frozen=True)
class Holder:
    """Who asked for a token and which actions they may be granted."""

    name: str
    actions: tuple[str, ...]


def basic(header: str) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic …` header, or None."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded or len(encoded) > MAX_CREDENTIAL:
        return None
    try:
        user, colon, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if colon else None


class RegistryTokens:
    """Checks credentials and signs tokens; made in the API's lifespan."""

    def __init__(self, bus: Bus, settings: ApiSettings, signer: TokenSigner | None) -> None:
        self.bus = bus
        self.settings = settings
        self.signer = signer
        self.auth = AuthDir(settings.platform.auth_dir)

    @classmethod
    def load(cls, bus: Bus, settings: ApiSettings) -> RegistryTokens:
        """With the signing key when this API holds one (otherwise every request answers 503)."""
        key, cert = settings.registry_token_files
        signer = None
        if key.exists() and cert.exists():
            signer = TokenSigner.from_files(
                key, cert, service=settings.registry_service, issuer=settings.registry_issuer
            )
        else:
            log.warning("api: no registry token key at %s; the registry token service is off", key)
        return cls(bus, settings, signer)

    async def holder(self, user: str, password: str) -> Holder | None:
        """The caller these credentials stand for, or None."""
        services = {
            IMAGER: (self.settings.registry_imager_password, ALL_ACTIONS),
            KUBE: (self.settings.registry_kube_password, PULL_ONLY),
        }
        if user in services:
            secret, actions = services[user]
            expected = secret.get_secret_value()
            if expected and hmac.compare_digest(password.encode(), expected.encode()):
                return Holder(user, actions)
            return None
        if not is_node_uuid(user) or await self.machine_key(user, password) is None:
            return None
        return Holder(user, PULL_ONLY)

    async def machine_key(self, node_uuid: str, user_jwt: str) -> str | None:
        """The machine's public key when `user_jwt` is its current, unrevoked credential."""
        try:
            account = self.auth.account_public
        except OSError:
            log.warning("api: no account key in %s; machines cannot get registry tokens", self.auth.root)
            return None
        key = verified_machine_key(user_jwt, account, node_uuid)
        if key is None:
            return None
        record = await self.bus.store(subjects.ENROLL).get(subjects.machine_key(node_uuid))
        machine = record.machine if record else None
        if machine is None or machine.public_key != key or machine.revoked_at > 0:
            return None
        if key in self.auth.revocations():  # revoked on this host, not yet in the bucket
            return None
        return key

    async def issue(self, request: Request, service: str, scopes: list[str]) -> RegistryToken:
        """A token for the caller of `request` with what it may do of `scopes`; refusals raise."""
        limiter: FailureLimiter = request.app.state.limiter
        client = (request.client.host if request.client else "") or ""
        wait = limiter.blocked(client)
        if wait:
            request.state.repeated_refusal = not limiter.first_refusal(client)  # audited once per block
            detail = f"{client} failed to authenticate too often; try again in {math.ceil(wait)} s"
            raise TooManyFailures(detail=detail)
        if self.signer is None:
            raise Unavailable(detail="this API holds no registry token key (TINGYU_API_REGISTRY_TOKEN_KEY)")
        credentials = basic(request.headers.get("authorization", ""))
        if credentials is None:
            raise Unauthenticated(
                detail="send HTTP Basic credentials: a service's secret, or a machine's uuid and JWT"
            )
        user, password = credentials
        request.state.claimed = user[:64]
        if service and service != self.signer.service:
            raise Unauthenticated(
                detail=f"this token service serves {self.signer.service!r}, not {service[:64]!r}"
            )
        holder = await self.holder(user, password)
        if holder is None:
            limiter.failed(client)
            raise Unauthenticated(detail=f"unknown, wrong or revoked registry credential for {user[:64]!r}")
        access = grant(parse_scopes(scopes), holder.actions)
        issued = self.signer.sign(holder.name, access, self.settings.registry_token_ttl_s)
        at = datetime.datetime.fromtimestamp(issued.issued_at, datetime.UTC).isoformat()
        return RegistryToken(
            token=issued.token, access_token=issued.token, expires_in=issued.expires_in, issued_at=at
        )
