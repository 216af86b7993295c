"""API credentials: who a bearer token is, and the limit on failed attempts per client.

A token is `ty_<id>_<secret>`: `id` is the key of its record in `ty_tokens`, which holds only the
sha256 of `secret`. The bootstrap admin token (`TINGYU_API_ADMIN_TOKEN`) is any string of 16
characters or more and lives only in the API's settings. Records are read at most
`TINGYU_API_TOKEN_CACHE_S` old, so a revocation reaches every API replica within that time (at
once on the replica that revoked it).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.tokens import Role, TokenRecord

BOOTSTRAP_ID = "bootstrap"
BOOTSTRAP_NAME = "admin"
MIN_ADMIN_TOKEN = 16
MAX_TOKEN = 256  # characters of a bearer token; anything longer is not one of ours
_TOKEN = re.compile(r"ty_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class Principal:
    """The caller a valid token stands for."""

    id: str
    name: str
    role: Role
    areas: frozenset[str] = frozenset()  # empty: every area

    def allows(self, role: Role) -> bool:
        return self.role.allows(role)

    def covers(self, area: str) -> bool:
        """Whether this caller may act on machines of `area`."""
        return not self.areas or area in self.areas


BOOTSTRAP = Principal(BOOTSTRAP_ID, BOOTSTRAP_NAME, Role.ADMIN)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def mint() -> tuple[str, str, str]:
    """A new (id, secret, token); the token is shown once and only the secret's digest is stored."""
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    return token_id, secret, f"ty_{token_id}_{secret}"


def split(token: str) -> tuple[str, str] | None:
    """(id, secret) of a token of ours, or None."""
    found = _TOKEN.fullmatch(token)
    return (found.group(1), found.group(2)) if found else None


def bearer(header: str) -> str:
    """The token of an `Authorization: Bearer <token>` header ("" when there is none)."""
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def principal_of(record: TokenRecord) -> Principal:
    return Principal(record.id, record.name, record.role, frozenset(record.areas))


class Keyring:
    """Checks bearer tokens against the bootstrap token and the `ty_tokens` bucket (briefly cached)."""

    def __init__(
        self,
        bus: Bus,
        admin_token: str,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_cached: int = 10_000,
    ) -> None:
        self.store = bus.store(subjects.TOKENS)
        self.admin_digest = digest(admin_token) if admin_token else ""
        self.cache_s = cache_s
        self.clock = clock
        self.max_cached = max_cached
        self._cache: OrderedDict[str, tuple[float, TokenRecord | None]] = OrderedDict()

    async def principal(self, token: str) -> Principal | None:
        """Who `token` is, or None for a token that is malformed, unknown or revoked."""
        if not token or len(token) > MAX_TOKEN:
            return None
        if self.admin_digest and hmac.compare_digest(digest(token), self.admin_digest):
            return BOOTSTRAP
        parts = split(token)
        if parts is None:
            return None
        token_id, secret = parts
        record = await self.record(token_id)
        if record is None or not record.active or not hmac.compare_digest(digest(secret), record.digest):
            return None
        return principal_of(record)

    async def record(self, token_id: str) -> TokenRecord | None:
        now = self.clock()
        cached = self._cache.get(token_id)
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        record = await self.store.get(token_id)
        self._cache[token_id] = (now, record)
        self._cache.move_to_end(token_id)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
        return record

    def forget(self, token_id: str) -> None:
        """Drop a cached record (this replica changed it)."""
        self._cache.pop(token_id, None)


@dataclass
class _Client:
    failures: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0
    told: bool = False  # a refusal of this block was already audited


class FailureLimiter:
    """After `max_failures` failed authentications within `window_s`, a client address is refused
    without checking until `window_s` after its last counted failure. Memory stays bounded: the
    least recently seen addresses are forgotten first."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self.max_clients = max_clients
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def blocked(self, address: str) -> float:
        """Seconds until `address` may try again (0: it may now)."""
        client = self._clients.get(address)
        if client is None or self.max_failures <= 0:
            return 0.0
        left = client.blocked_until - self.clock()
        return left if left > 0 else 0.0

    def first_refusal(self, address: str) -> bool:
        """True once per block: the refusal worth an audit event (the rest of a flood is not)."""
        client = self._clients.get(address)
        if client is None or client.told:
            return False
        client.told = True
        return True

    def failed(self, address: str) -> None:
        """Count one failed authentication of `address`."""
        if self.max_failures <= 0:
            return
        now = self.clock()
        client = self._clients.pop(address, None) or _Client()
        self._clients[address] = client  # most recently seen last
        client.failures.append(now)
        while client.failures and client.failures[0] <= now - self.window_s:
            client.failures.popleft()
        if len(client.failures) >= self.max_failures:
            client.blocked_until = now + self.window_s
            client.told = False
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)


def clean_areas(areas: Iterable[str]) -> list[str]:
    """Areas without blanks or repeats, in the order given."""
    return list(dict.fromkeys(area.strip() for area in areas if area.strip()))
