"""The suite's trust material, made once per session the way `tingyu up` makes it: one operator,
account and CA for every nats-server a test starts, the bootstrap admin token of the API, the edge
policy tests run under, and machine credentials for agents that tests start themselves.

Importing it sets the environment every process of the session reads (TINGYU_NATS_CREDS,
TINGYU_NATS_CA, the policy): auth and TLS are on for the whole suite, as users run it.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from tingyu.agent.identity import load_or_create
from tingyu.cli.launcher import PlatformConfig
from tingyu.common.auth import jwt
from tingyu.common.auth.material import AuthDir, write_secret
from tingyu.common.auth.permissions import REPLY_TTL_S, machine_inbox, machine_permissions
from tingyu.common.auth.tls import ensure_local_tls
from tingyu.common.settings import PlatformSettings

# The edge policy's default folders plus the temporary folder the tests mount (tmp_path lives there),
# and the registry integration tests name in full references (their peers never pull); the fixed
# deny list stays as it is. In-process agents and services read it from the environment too.
TEST_POLICY = {
    "TINGYU_POLICY_HOSTPATH_ALLOW": f"/data,/storage,/tmp/tingyu,{tempfile.gettempdir()}",
    "TINGYU_POLICY_REGISTRIES": "127.0.0.1:5000",
}
os.environ.update(TEST_POLICY)
# The bootstrap admin token of the test platform: the suite runs with authentication on, as users do.
ADMIN_TOKEN = "test-admin-" + secrets.token_hex(16)
# One operator, account and CA for every nats-server this session starts (made the way `tingyu up`
# makes them). The tests' own connections are the admin user's, through the settings every process
# reads (TINGYU_NATS_CREDS, TINGYU_NATS_CA): auth and TLS are on for the whole suite.
TRUST = Path(tempfile.mkdtemp(prefix="tingyu-trust-"))
atexit.register(shutil.rmtree, TRUST, True)
AUTH = AuthDir(TRUST / "auth").ensure()
NATS_CA, _, _ = ensure_local_tls(TRUST / "tls")
os.environ["TINGYU_NATS_CREDS"] = str(AUTH.creds("admin"))
os.environ["TINGYU_NATS_CA"] = str(NATS_CA)
os.environ["TINGYU_NATS_AUTH_DIR"] = str(AUTH.root)


def machine_creds(folder: Path, node_uuid: str, reply_ttl_s: float = REPLY_TTL_S) -> tuple[Path, str]:
    """A machine's own credential, signed as the API signs it at enrollment: (creds file, public key)."""
    seed = jwt.new_seed("user")
    permissions = machine_permissions(node_uuid, reply_ttl_s)
    token = jwt.user_jwt(AUTH.seed("account"), jwt.public_key(seed), node_uuid, permissions)
    path = folder / f"{node_uuid}.creds"
    write_secret(path, jwt.creds(token, seed))
    return path, jwt.public_key(seed)


def machine_settings(nats_url: str, creds: Path, node_uuid: str) -> PlatformSettings:
    """How a machine connects: its own credential and inbox."""
    return PlatformSettings(
        nats_url=nats_url, nats_creds=str(creds), nats_inbox_prefix=machine_inbox(node_uuid)
    )


def enroll_offline(agent_state: Path) -> str:
    """Give an agent's state folder an identity and an enrolled credential (for agents started by
    tests without the API); returns the uuid."""
    uuid = load_or_create(agent_state).uuid
    creds, _ = machine_creds(agent_state, uuid)
    creds.rename(agent_state / "nats.creds")
    return uuid


def trusted(config: PlatformConfig) -> PlatformConfig:
    """The config with this session's trust material."""
    config.auth_dir = AUTH.root
    config.tls_dir = TRUST / "tls"
    return config


# Short periods so that convergence, NotReady and metering windows happen within a test.
FAST_ENV = {
    "TINGYU_AGENT_HEARTBEAT_S": "1",
    "TINGYU_AGENT_RESYNC_S": "3",
    "TINGYU_AGENT_SAMPLE_S": "1",
    "TINGYU_AGENT_SAMPLE_READINGS": "2",  # readings gathered into a batch, as agents do (6 by default)
    "TINGYU_AGENT_AREA": "南京",
    "TINGYU_AGENT_OPERATOR": "移动",
    "TINGYU_AGENT_BANDWIDTH_MBPS": "1000",
    "TINGYU_AGENT_STOP_TIMEOUT_S": "1",
    "TINGYU_NODES_NOT_READY_AFTER_S": "4",
    "TINGYU_NODES_LEASE_S": "2",
    "TINGYU_DEPLOYER_JOB_TIMEOUT_S": "120",
    "TINGYU_DEPLOYER_NUDGE_AGAIN_S": "1",  # an unanswered nudge is sent again after 1, 2, 4 … s
    "TINGYU_DEPLOYER_ROLLOUT_MAX_UNAVAILABLE": "2",
    "TINGYU_DEPLOYER_ROLLOUT_MIN_EXECUTED": "2",
    "TINGYU_DEPLOYER_ROLLOUT_TICK_S": "0.3",
    "TINGYU_METERING_BATCH_WAIT_S": "0.5",
    "TINGYU_LOG_LEVEL": "INFO",
    **TEST_POLICY,
    "TINGYU_API_ADMIN_TOKEN": ADMIN_TOKEN,
    "TINGYU_API_WORKERS": "1",  # one process, so /metrics and the round-trip counts are its own
}


def bearer(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
