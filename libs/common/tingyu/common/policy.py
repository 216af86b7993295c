"""Edge policy: what a container may mount and where its image may come from.

One pure module, judged the same way by the API (a refused item never becomes a job) and by the
agent (a desired state written straight into `ty_desired` cannot get past it). Each check answers
the reason a person reads, or '' when the container is allowed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict

from tingyu.common.models.containers import ContainerSpec, Volume
from tingyu.common.names import registry_of, split_csv
from tingyu.common.settings import get_platform_settings

# Host files the contract's own example mounts; they are bound read-only.
READ_ONLY_FILES = frozenset({"/etc/resolv.conf", "/etc/localtime"})
# Never mounted, whatever TINGYU_POLICY_HOSTPATH_ALLOW says: neither they, nor anything under them,
# nor a folder that holds them.
DENIED = (
    "/etc",
    "/root",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/var/run",
    "/run",
    "/var/lib/docker",
)
SOCKETS = frozenset({"docker.sock", "containerd.sock", "dockershim.sock"})
MAX_PATH = 4096


class PolicySettings(BaseSettings):
    """Where containers may mount host paths from and which registries full references may name."""

    model_config = SettingsConfigDict(env_prefix="TINGYU_POLICY_", extra="ignore")

    hostpath_allow: str = "/data,/storage,/tmp/tingyu"  # comma-separated folders
    registries: str = ""  # comma-separated hosts as in a reference; the platform's registry is always allowed


@lru_cache
def get_policy_settings() -> PolicySettings:
    """The process-wide policy settings; tests call `get_policy_settings.cache_clear()`."""
    return PolicySettings()


def normalised(path: str) -> str:
    """`path` with '.', '..', repeated and trailing slashes folded (POSIX keeps a leading '//')."""
    folded = posixpath.normpath(path)
    return "/" + folded.lstrip("/") if folded.startswith("/") else folded


def _under(path: str, folder: str) -> bool:
    return folder in ("/", path) or path.startswith(folder + "/")


@dataclass(frozen=True)
class Policy:
    """The rules one process applies; build it with `Policy.from_settings()`."""

    hostpath_allow: tuple[str, ...] = ("/data", "/storage", "/tmp/tingyu")
    registries: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: PolicySettings | None = None, own_registry: str | None = None) -> Policy:
        settings = settings or get_policy_settings()
        own = get_platform_settings().registry if own_registry is None else own_registry
        return _policy(settings.hostpath_allow, settings.registries, own)

    def volume_refusal(self, volume: Volume, resolve: Callable[[str], str] | None = None) -> str:
        """Why this bind is refused, or ''. `resolve` (the agent: realpath) judges symlinks' targets too."""
        mount = volume.mountPath
        if (
            not mount.startswith("/")
            or ":" in mount
            or "\0" in mount
            or normalised(mount) != mount.rstrip("/")
        ):
            return f"mountPath '{mount}' must be an absolute, normalised path without options"
        host = volume.hostPath
        if not host.startswith("/") or "\0" in host or ":" in host or len(host) > MAX_PATH:
            return f"hostPath '{host}' must be an absolute path"
        path = normalised(host)
        if path in READ_ONLY_FILES:
            return ""
        reason = self._host_refusal(path)
        if reason:
            return f"hostPath '{host}' is not allowed: {reason}"
        real = normalised(resolve(path)) if resolve else path
        reason = self._host_refusal(real) if real != path else ""
        if reason:
            return f"hostPath '{host}' is not allowed: it leads to {real}, and {reason}"
        return ""

    def _host_refusal(self, path: str) -> str:
        if path == "/":
            return "the host's root is never mounted"
        if posixpath.basename(path) in SOCKETS:
            return "the container engine's socket is never mounted"
        for denied in DENIED:
            if _under(path, denied) or _under(denied, path):
                return f"{denied} is never mounted"
        if not any(_under(path, folder) for folder in self.hostpath_allow):
            allowed = ", ".join(self.hostpath_allow) or "nothing"
            return f"host paths must be under {allowed} (TINGYU_POLICY_HOSTPATH_ALLOW)"
        return ""

    def image_refusal(self, image_ref: str) -> str:
        """Why pulling this reference is refused, or ''."""
        registry = registry_of(image_ref)
        if registry in self.registries:
            return ""
        allowed = ", ".join(sorted(self.registries)) or "none"
        return (
            f"image {image_ref} comes from registry {registry}, which is not allowed "
            f"(allowed: {allowed}; TINGYU_POLICY_REGISTRIES)"
        )

    def mounts_refusal(self, spec: ContainerSpec, resolve: Callable[[str], str] | None = None) -> str:
        """The first reason one of this container's binds is refused, or ''."""
        for volume in spec.volumes:
            reason = self.volume_refusal(volume, resolve)
            if reason:
                return reason
        return ""

    def spec_refusal(self, spec: ContainerSpec) -> str:
        """The first reason this container is refused (its mounts, then its image), or ''."""
        return self.mounts_refusal(spec) or self.image_refusal(spec.image_ref)

    @staticmethod
    def read_only(volume: Volume) -> bool:
        """The host files that are bound read-only."""
        return normalised(volume.hostPath) in READ_ONLY_FILES


def bind(volume: Volume) -> str:
    """Docker's bind string for a volume the policy allowed (the two host files read-only)."""
    suffix = ":ro" if Policy.read_only(volume) else ""
    return f"{normalised(volume.hostPath)}:{volume.mountPath}{suffix}"


@lru_cache(maxsize=64)
def _policy(hostpath_allow: str, registries: str, own: str) -> Policy:
    """The policy of these settings, built once (the API asks for it on every container item)."""
    allow = tuple(normalised(p) for p in split_csv(hostpath_allow) if p.startswith("/"))
    hosts = {host.lower() for host in split_csv(registries)} | ({own.lower()} if own else set())
    return Policy(hostpath_allow=allow, registries=frozenset(hosts))
