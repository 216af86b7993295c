"""The agent's view of its machine: facts, identity and settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from tingyu.agent.config import AgentSettings
from tingyu.agent.facts import architecture, read_facts, read_os_image
from tingyu.agent.identity import Identity, load_or_create
from tingyu.common.names import is_node_uuid
from tingyu.common.settings import PlatformSettings


def make_settings(tmp_path: Path, **values: object) -> AgentSettings:
    return AgentSettings(platform=PlatformSettings(state_dir=tmp_path), **values)  # type: ignore[arg-type]


def test_facts_are_this_machines(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, area="南京", operator="电信", bandwidth_mbps=500)
    facts = read_facts(Identity("tingyu-" + "a" * 32, "a" * 32), settings)
    assert facts.cpu == os.cpu_count()
    assert (
        facts.memory * 2**20
        <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        < (facts.memory + 1) * 2**20
    )
    assert (facts.area, facts.operator, facts.bandwith) == ("南京", "电信", 500)
    assert all(nic.Name != "lo" and nic.Type in ("real", "virt") for nic in facts.eth)
    assert all(nic.Type == "real" for nic in facts.eth if Path("/sys/class/net", nic.Name, "device").exists())
    root = [disk for disk in facts.diskinfo if disk.Name == "/"]
    assert root
    assert 0 <= root[0].Use <= root[0].Size
    assert not any(disk.Name.startswith(("/proc", "/sys", "/dev/shm")) for disk in facts.diskinfo)
    assert facts.kernelversion == os.uname().release
    assert facts.architecture in ("amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64")
    assert facts.operatingsystem == "linux"
    assert facts.digest() == read_facts(Identity("tingyu-" + "a" * 32, "a" * 32), settings).digest()


def test_os_image_and_architecture(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    assert read_os_image(release) == "Debian GNU/Linux 12 (bookworm)"
    assert read_os_image(tmp_path / "missing") == ""
    assert architecture() != "x86_64"


def test_identity_is_made_once(tmp_path: Path) -> None:
    first = load_or_create(tmp_path)
    assert is_node_uuid(first.uuid)
    assert first.nodename == first.uuid.removeprefix("tingyu-")
    assert load_or_create(tmp_path) == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_broken_identity_is_refused(tmp_path: Path) -> None:
    (tmp_path / "identity.json").write_text('{"uuid": "nope"}')
    with pytest.raises(ValueError, match="no valid machine uuid"):
        load_or_create(tmp_path)


def test_settings_defaults_and_operator(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert settings.state_dir == tmp_path / "agent"
    assert (settings.heartbeat_s, settings.resync_s, settings.facts_every) == (10, 30, 30)
    with pytest.raises(ValidationError, match="operator"):
        make_settings(tmp_path, operator="铁通")
