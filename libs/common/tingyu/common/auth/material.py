"""The platform's NATS trust material in one folder (`var/nats/auth` for `tingyu up`):

    operator.seed  operator.jwt        the operator nats-server trusts
    account.seed   account.jwt         account TINGYU: every service and machine; signs machine users
    system.seed    system.jwt          the system account (pushes account updates to the server)
    users/<name>.creds                 one service user per service, `admin` for the CLI, `system`,
                                       `leaf` for the link of a regional leaf node to the cluster,
                                       `kube` for the Kubernetes agent (one process, many Nodes)

Made once on first start and kept; every file is mode 0600. The account JWT carries the revocation
list: `revoke` adds a user key to it, re-signs it and the caller pushes it to the server.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tingyu.common import subjects
from tingyu.common.auth import jwt
from tingyu.common.auth.permissions import service_permissions

ACCOUNT = "TINGYU"
SYSTEM = "SYS"
SERVICE_USERS = ("nodes", "deployer", "imager", "metering", "api", "admin", "sim", "leaf", "kube")
CLAIMS_UPDATE = "$SYS.REQ.CLAIMS.UPDATE"


def write_secret(path: Path, text: str) -> None:
    """Write a file only its owner can read (created 0600, never briefly wider)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class AuthDir:
    """One folder of trust material (see the module text); `partitions` is the heartbeat
    partition count the account's subject mapping spreads heartbeats over."""

    root: Path
    partitions: int = subjects.HEARTBEAT_PARTITIONS

    def seed(self, name: str) -> str:
        return (self.root / f"{name}.seed").read_text().strip()

    def jwt(self, name: str) -> str:
        return (self.root / f"{name}.jwt").read_text().strip()

    def creds(self, user: str) -> Path:
        return self.root / "users" / f"{user}.creds"

    @property
    def operator_jwt_file(self) -> Path:
        return self.root / "operator.jwt"

    @property
    def account_public(self) -> str:
        return jwt.public_key(self.seed("account"))

    @property
    def system_public(self) -> str:
        return jwt.public_key(self.seed("system"))

    @property
    def revocations_file(self) -> Path:
        return self.root / "revocations.json"

    def revocations(self) -> dict[str, int]:
        if not self.revocations_file.exists():
            return {}
        found: dict[str, int] = json.loads(self.revocations_file.read_text())
        return found

    def ensure(self, users: tuple[str, ...] = SERVICE_USERS) -> AuthDir:
        """Make whatever is missing: keys, JWTs, service users. Existing material is kept."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, kind in (("operator", "operator"), ("account", "account"), ("system", "account")):
            if not (self.root / f"{name}.seed").exists():
                write_secret(self.root / f"{name}.seed", jwt.new_seed(kind))
        if not self.operator_jwt_file.exists():
            operator = jwt.operator_jwt(self.seed("operator"), "tingyu", self.system_public)
            write_secret(self.operator_jwt_file, operator)
        if not (self.root / "system.jwt").exists():
            system = jwt.account_jwt(
                self.seed("operator"), self.system_public, SYSTEM, jetstream=False, revocations={}
            )
            write_secret(self.root / "system.jwt", system)
        if not (self.root / "account.jwt").exists() or self.stale_mappings():
            self.sign_account()  # a newer account JWT replaces the resolver's copy at server start
        for user in users:
            if not self.creds(user).exists():
                self.make_user(user, "account", service_permissions())
        if not self.creds("system").exists():
            self.make_user("system", "system", {})
        return self

    def make_user(self, name: str, account: str, permissions: dict[str, object]) -> Path:
        """A fresh user of `account` with its own key, written as `users/<name>.creds`."""
        seed = jwt.new_seed("user")
        token = jwt.user_jwt(self.seed(account), jwt.public_key(seed), name, permissions)
        write_secret(self.creds(name), jwt.creds(token, seed))
        return self.creds(name)

    @property
    def mappings(self) -> dict[str, str]:
        return subjects.heartbeat_mapping(self.partitions)

    def stale_mappings(self) -> bool:
        """Whether the kept account JWT maps subjects other than this folder's `mappings` (made
        before heartbeats were partitioned, or with another partition count)."""
        claims = jwt.decode(self.jwt("account"))["nats"]
        kept = {source: dest[0]["subject"] for source, dest in claims.get("mappings", {}).items()}
        return kept != self.mappings

    def sign_account(self) -> str:
        """Sign the account JWT again with the current revocation list, keep it, return it."""
        token = jwt.account_jwt(
            self.seed("operator"),
            self.account_public,
            ACCOUNT,
            jetstream=True,
            revocations=self.revocations(),
            mappings=self.mappings,
        )
        write_secret(self.root / "account.jwt", token)
        return token

    def revoke(self, user_public: str) -> str:
        """Revoke every JWT of this user key issued until now; returns the account JWT to push."""
        revoked = self.revocations()
        revoked[user_public] = int(time.time()) + 1  # JWTs issued in this second count as revoked too
        write_secret(self.revocations_file, json.dumps(revoked, indent=1, sort_keys=True))
        return self.sign_account()

    def server_config(self, resolver_dir: Path) -> str:
        """The `nats-server` configuration lines of decentralized auth: the trusted operator, the
        system account, the full resolver (so account updates can be pushed) and both accounts."""
        return (
            f"operator: {json.dumps(str(self.operator_jwt_file))}\n"
            f"system_account: {self.system_public}\n"
            "resolver: {\n"
            "  type: full\n"
            f"  dir: {json.dumps(str(resolver_dir))}\n"
            "  allow_delete: false\n"
            "  timeout: 2s\n"
            "}\n"
            "resolver_preload: {\n"
            f"  {self.account_public}: {self.jwt('account')}\n"
            f"  {self.system_public}: {self.jwt('system')}\n"
            "}\n"
        )

    def server_env(self, resolver_dir: Path) -> dict[str, str]:
        """The same trust as `server_config`, as the environment deploy/nats/cluster.conf and
        leaf.conf read (nats-server parses a variable's value as configuration, so the preload
        map travels as one string)."""
        preload = ", ".join(
            f"{key}: {json.dumps(self.jwt(name))}"
            for key, name in ((self.account_public, "account"), (self.system_public, "system"))
        )
        return {
            "TINGYU_NATS_OPERATOR": str(self.operator_jwt_file),
            "TINGYU_NATS_SYSTEM_ACCOUNT": self.system_public,
            "TINGYU_NATS_ACCOUNT": self.account_public,
            "TINGYU_NATS_RESOLVER_DIR": str(resolver_dir),
            "TINGYU_NATS_RESOLVER_PRELOAD": f"{{ {preload} }}",
        }
