"""A platform on three clustered nats-servers with two replicas of every service and one real agent.

Started once per session through the launcher (`ClusterPlatform`), on free ports and in a
temporary folder, so that it runs beside a live `make up`. Auth and TLS are on as everywhere: the
session's operator and CA (tests/conftest.py), each service with its own user, the agent enrolled
through the API, the test's own connection as the admin user, the API called with the admin token."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import httpx
import pytest
import pytest_asyncio

from tests.support import FAST_ENV, bearer, remove_agent_containers, trusted
from tingyu.cli.launcher import JETSTREAM_DOMAIN, ClusterConfig, ClusterPlatform, free_port
from tingyu.common.bus import Bus

# Short leases so that a leader's death is noticed within seconds; a machine is NotReady only
# after a silence longer than a NATS failover, as in production where it is 40 s.
CLUSTER_ENV = {
    **FAST_ENV,
    "TINGYU_NODES_NOT_READY_AFTER_S": "12",
    "TINGYU_NODES_LEADER_TTL_S": "4",
    "TINGYU_DEPLOYER_ROLLOUT_LEASE_S": "4",
}


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterPlatform]:
    with tempfile.TemporaryDirectory(prefix="tingyu-cluster-") as folder:
        state = Path(folder)
        log_file = Path(os.environ.get("TINGYU_TEST_LOG", str(state / "platform.log")))
        config = trusted(
            ClusterConfig(
                state_dir=state,
                registry_port=free_port(),
                api_port=free_port(),
                extra_env=CLUSTER_ENV,
                colour=False,
                log_file=log_file,
            )
        )
        platform = ClusterPlatform(config)
        try:
            platform.start_all()
            yield platform
        except BaseException:
            if log_file.exists():
                print(log_file.read_text()[-20000:])
            raise
        finally:
            for name in [n for n in platform.procs if n.startswith("agent")]:
                platform.kill(name, signal.SIGTERM)
            for identity in state.glob("**/identity.json"):
                remove_agent_containers(identity)
            platform.stop()
            print(f"cluster log: {log_file}")


@pytest_asyncio.fixture(scope="session")
async def cluster_bus(cluster: ClusterPlatform) -> AsyncIterator[Bus]:
    """The test's own connection to the cluster, to publish samples and read stores."""
    settings = cluster.config.admin_settings().model_copy(update={"nats_domain": JETSTREAM_DOMAIN})
    # Not `ensure`: declaring the topology with this process's replica count would rescale the streams.
    bus = await Bus.connect(settings, "tingyu-cluster-tests", ensure=False)
    yield bus
    await bus.close()


@pytest_asyncio.fixture(scope="session")
async def apis(cluster: ClusterPlatform) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One HTTP client per API replica, sending the admin token."""
    clients = [
        httpx.AsyncClient(base_url=url, timeout=30.0, headers=bearer()) for url in cluster.config.api_urls
    ]
    yield clients
    for client in clients:
        await client.aclose()


@pytest.fixture(scope="session")
def docker_client(cluster: ClusterPlatform) -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=60)
    yield client
    client.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed cluster test says which of the cluster's processes had ended, with their last
    lines, and the platform's last errors: the log file itself goes with the temporary folder."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    cluster = getattr(item, "funcargs", {}).get("cluster")
    if report.when == "call" and report.failed and isinstance(cluster, ClusterPlatform):
        report.sections.append(("cluster processes", ended(cluster)))
        report.sections.append(("cluster errors", last_errors(cluster.config.log_file)))


def ended(cluster: ClusterPlatform) -> str:
    lines = []
    for name, proc in cluster.procs.items():
        code = proc.popen.poll()
        if code is not None:
            lines.append(f"{name} exited with {code}; its last lines:")
            lines.extend(f"  {line}" for line in proc.tail)
    return "\n".join(lines) or "every process the cluster started is still running"


def last_errors(log_file: Path | None, count: int = 80) -> str:
    """The last `count` lines of the log at WARNING or above, or of a traceback."""
    if log_file is None or not log_file.exists():
        return "(no log file)"
    marks = (" WARNING ", " ERROR ", " CRITICAL ", "Traceback", "Error:", "exited")
    text = log_file.read_text(errors="replace")
    lines = [line for line in text.splitlines() if any(mark in line for mark in marks)]
    return "\n".join(lines[-count:]) or "(no warning or error in the log)"
