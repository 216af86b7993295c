"""The edge policy: which host paths a container may mount and which registries it may pull from."""

from __future__ import annotations

from pathlib import Path

import pytest

from tingyu.common.models.containers import ContainerSpec, Volume
from tingyu.common.policy import Policy, PolicySettings, bind

OWN = "127.0.0.1:5000"


def policy(allow: str = "/data,/storage,/tmp/tingyu", registries: str = "") -> Policy:
    return Policy.from_settings(PolicySettings(hostpath_allow=allow, registries=registries), own_registry=OWN)


def spec(*volumes: tuple[str, str], image_ref: str = f"{OWN}/pcdn:v6.1333") -> ContainerSpec:
    return ContainerSpec(
        image="pcdn",
        imageversion="v6.1333",
        image_ref=image_ref,
        volumes=[Volume(hostPath=host, mountPath=mount) for host, mount in volumes],
    )


@pytest.mark.parametrize(
    "host", ["/data", "/data/vdp/instance1", "/storage/x", "/tmp/tingyu", "/tmp/tingyu/a/b", "/data/"]
)
def test_allowed_prefixes(host: str) -> None:
    assert policy().volume_refusal(Volume(hostPath=host, mountPath="/srv")) == ""


@pytest.mark.parametrize("host", ["/database", "/tmp", "/tmp/tingyuX", "/home/user", "/opt", "/var/log"])
def test_outside_the_prefixes(host: str) -> None:
    reason = policy().volume_refusal(Volume(hostPath=host, mountPath="/srv"))
    assert "TINGYU_POLICY_HOSTPATH_ALLOW" in reason
    assert host in reason


@pytest.mark.parametrize(
    "host",
    [
        "/",
        "//",
        "/etc",
        "/etc/",
        "/etc/shadow",
        "//etc/shadow",
        "/data/../etc",
        "/etc/./resolv.conf/..",
        "/root",
        "/proc/1/root",
        "/sys",
        "/dev/sda",
        "/boot",
        "/var/run",
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/run",
        "/var/lib/docker",
        "/var/lib/docker/overlay2",
        "/var",  # holds /var/run and /var/lib/docker
        "/var/lib",
        "/data/docker.sock",  # the engine's socket, wherever it is
    ],
)
def test_never_mounted_whatever_the_setting(host: str) -> None:
    everything = policy(allow="/")
    reason = everything.volume_refusal(Volume(hostPath=host, mountPath="/srv"))
    assert "never mounted" in reason, reason
    also_listed = policy(allow=f"/data,{host.rstrip('/') or '/'}")
    assert also_listed.volume_refusal(Volume(hostPath=host, mountPath="/srv"))


@pytest.mark.parametrize("host", ["/etc/resolv.conf", "/etc/localtime"])
def test_the_contracts_host_files_are_bound_read_only(host: str) -> None:
    volume = Volume(hostPath=host, mountPath=host)
    assert policy(allow="").volume_refusal(volume) == ""
    assert bind(volume) == f"{host}:{host}:ro"
    assert bind(Volume(hostPath="/data/a", mountPath="/a")) == "/data/a:/a"


@pytest.mark.parametrize("mount", ["/srv:ro", "/srv:rw,z", "srv", "", "/a/../b", "/a/./b", "/srv\x00"])
def test_mount_path_is_absolute_normalised_without_options(mount: str) -> None:
    reason = policy().volume_refusal(Volume(hostPath="/data", mountPath=mount))
    assert "mountPath" in reason


@pytest.mark.parametrize("host", ["relative/path", "/data:/x", "/data\x00"])
def test_host_path_is_absolute_without_options(host: str) -> None:
    assert "hostPath" in policy().volume_refusal(Volume(hostPath=host, mountPath="/srv"))


def test_a_symlink_out_of_an_allowed_folder_is_refused_where_it_is_resolved(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "escape").symlink_to("/etc")
    (allowed / "inside").mkdir()
    rules = policy(allow=str(allowed))
    escape = Volume(hostPath=str(allowed / "escape"), mountPath="/srv")
    assert rules.volume_refusal(escape) == ""  # as given, the path is under the allowed folder
    assert "/etc" in rules.volume_refusal(escape, resolve=lambda p: str(Path(p).resolve()))
    inside = Volume(hostPath=str(allowed / "inside"), mountPath="/srv")
    assert rules.volume_refusal(inside, resolve=lambda p: str(Path(p).resolve())) == ""


def test_registries() -> None:
    rules = policy(registries="localhost, Registry.Example.com:5000")
    assert rules.image_refusal(f"{OWN}/pcdn:v1") == ""  # the platform's own, always
    assert rules.image_refusal("localhost/pcdn:v1") == ""
    assert rules.image_refusal("registry.example.com:5000/a/b:1") == ""
    reason = rules.image_refusal("evil.example.org/pcdn:1")
    assert "evil.example.org" in reason
    assert "TINGYU_POLICY_REGISTRIES" in reason
    assert "docker.io" in rules.image_refusal("pcdn:1")  # no host: Docker Hub, not configured
    assert rules.image_refusal("registry.example.com/a:1")  # another port is another registry
    assert policy(registries="docker.io").image_refusal("busybox:1") == ""


def test_spec_refusal_names_the_first_reason() -> None:
    rules = policy()
    assert rules.spec_refusal(spec(("/data/a", "/a"), ("/etc/resolv.conf", "/etc/resolv.conf"))) == ""
    assert "/etc" in rules.spec_refusal(spec(("/data/a", "/a"), ("/etc", "/host-etc")))
    assert "evil" in rules.spec_refusal(spec(image_ref="evil.example.org/x:1"))


def test_default_settings() -> None:
    assert PolicySettings.model_fields["hostpath_allow"].default == "/data,/storage,/tmp/tingyu"
    assert Policy.from_settings(PolicySettings(registries=""), own_registry=OWN).registries == {OWN}
