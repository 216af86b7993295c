"""The imager's registry client against a registry that requires credentials (htpasswd, Basic)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest

from tingyu.cli.launcher import Platform, PlatformConfig, free_port, port_open, wait_until
from tingyu.common.errors import RegistryError
from tingyu.common.settings import PlatformSettings
from tingyu.imager.registry import RegistryClient

USER, PASSWORD = "robot", "s3cret-pass"


@pytest.fixture(scope="module")
def guarded_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """docker-registry on a free port that answers only to USER/PASSWORD."""
    root: Path = tmp_path_factory.mktemp("registry-auth")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    (root / "htpasswd").write_text(f"{USER}:{hashed}\n")
    with registry_serving(root, f"htpasswd:\n    realm: tingyu-test\n    path: {root / 'htpasswd'}\n") as url:
        yield url


@contextlib.contextmanager
def registry_serving(root: Path, auth: str = "", tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """docker-registry on a free port with its data under `root`, `auth` (the YAML under `auth:`,
    indented by four; none when empty) and with `tls` (certificate, key) over HTTPS; its URL until
    the block ends."""
    port = free_port()
    (root / "data").mkdir()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "")
        + (f"auth:\n  {auth}" if auth else "")
    )
    launcher = Platform(PlatformConfig(state_dir=root, colour=False, log_file=root / "registry.log"))
    launcher.spawn("registry", ["/usr/bin/docker-registry", "serve", str(config)])
    try:
        wait_until(lambda: port_open(port), 30, "docker-registry")
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        launcher.stop()


@pytest.fixture
async def client(guarded_registry: str) -> AsyncIterator[RegistryClient]:
    registry = RegistryClient(
        PlatformSettings(registry_url=guarded_registry, registry_user=USER, registry_password=PASSWORD)
    )
    yield registry
    await registry.close()


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def settings(url: str, password: str) -> PlatformSettings:
    return PlatformSettings(registry_url=url, registry_user=USER, registry_password=password)


def test_anonymous_requests_are_refused(guarded_registry: str) -> None:
    assert httpx.get(f"{guarded_registry}/v2/").status_code == 401


async def push_image(client: RegistryClient, name: str, tag: str) -> str:
    """A config and one layer, then the manifest, in the imager's order of calls; the manifest's digest."""
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    )
    layer = f"layer bytes of {name}:{tag}".encode()
    await client.ping()
    for blob in (config.encode(), layer):
        assert not await client.has_blob(name, digest(blob))
        await client.push_blob(name, digest(blob), len(blob), chunks(blob))
        assert await client.has_blob(name, digest(blob))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": digest(config.encode()),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                    "size": len(layer),
                    "digest": digest(layer),
                }
            ],
        }
    ).encode()
    pushed = await client.put_manifest(
        name, tag, manifest, "application/vnd.docker.distribution.manifest.v2+json"
    )
    assert pushed == digest(manifest)
    return pushed


async def test_push_with_credentials(client: RegistryClient) -> None:
    pushed = await push_image(client, "tytest/auth", "1")
    assert await client.manifest_digest("tytest/auth", "1") == pushed


async def test_wrong_password_is_a_registry_error(guarded_registry: str) -> None:
    wrong = RegistryClient(
        PlatformSettings(registry_url=guarded_registry, registry_user=USER, registry_password="nope")
    )
    try:
        with pytest.raises(RegistryError):
            await wrong.ping()
    finally:
        await wrong.close()
