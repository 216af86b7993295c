"""The platform's central services, a real Kubernetes control plane, and the kubernetes agent
(`TINGYU_RUNTIME=kubernetes`) between them; tests add Nodes and play the kubelet's part."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import pytest_asyncio

from tests.kubernetes import apiserver
from tests.support import FAST_ENV, bearer, trusted
from tingyu.cli.launcher import SERVICES, Platform, PlatformConfig, free_port

if TYPE_CHECKING:
    from kubernetes import client as k8s

NAMESPACE = "tingyu-test"
# The `k8s` extra is installed by `make k8s-test`; without it, `make test` does not even collect these.
collect_ignore_glob = [] if importlib.util.find_spec("kubernetes") else ["test_*.py"]
# The tests' images name a registry nothing pulls from (there is no kubelet): the edge policy allows it.
KUBE_ENV = {
    **FAST_ENV,
    "TINGYU_POLICY_REGISTRIES": f"{FAST_ENV['TINGYU_POLICY_REGISTRIES']},registry.example:5000",
}


@pytest.fixture(scope="session")
def kube_platform() -> Iterator[tuple[Platform, apiserver.ControlPlane]]:
    with tempfile.TemporaryDirectory(prefix="tingyu-k8s-") as folder:
        state = Path(folder)
        log_file = Path(os.environ.get("TINGYU_TEST_LOG", str(state / "platform.log")))
        config = trusted(
            PlatformConfig(
                state_dir=state,
                nats_port=free_port(),
                registry_port=free_port(),
                api_port=free_port(),
                services=tuple(s for s in SERVICES if s != "agent"),
                extra_env=KUBE_ENV,
                colour=False,
                log_file=log_file,
            )
        )
        platform = Platform(config)
        try:
            plane = apiserver.start(platform, state / "kube")
            platform.start_all()
            platform.start_service(
                "agent",
                {
                    "TINGYU_RUNTIME": "kubernetes",
                    "TINGYU_KUBE_KUBECONFIG": str(plane.kubeconfig),
                    "TINGYU_KUBE_NAMESPACE": NAMESPACE,
                    "TINGYU_KUBE_NODE_SYNC_S": "1",
                },
                label="kube-agent",
            )
            yield platform, plane
        except BaseException:
            if log_file.exists():
                print(log_file.read_text()[-20000:])
            raise
        finally:
            platform.stop()
            print(f"kubernetes platform log: {log_file}")


@pytest.fixture(scope="session")
def kube(kube_platform: tuple[Platform, apiserver.ControlPlane]) -> Iterator[k8s.ApiClient]:
    from kubernetes import config as k8s_config  # the optional `k8s` extra

    client = k8s_config.new_client_from_config(str(kube_platform[1].kubeconfig))
    yield client
    client.close()


@pytest_asyncio.fixture(scope="session")
async def kube_api(
    kube_platform: tuple[Platform, apiserver.ControlPlane],
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=kube_platform[0].config.api_url, timeout=30.0, headers=bearer()
    ) as client:
        yield client
