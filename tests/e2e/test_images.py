"""Image management end to end: real `docker save` tars, the platform's registry and catalog."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.support import ADMIN_TOKEN, build_busybox, docker_as, eventually, registry_http, unique
from tingyu.cli.launcher import Platform
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.models.containers import ContainerSpec, DesiredContainer

pytestmark = pytest.mark.e2e
BAD_ARCHIVE = "上传失败!请检查tar包是否是通过docker save保存!"


def saved_tar(client: docker.DockerClient, folder: Path, name: str) -> Path:
    """A busybox image written by `docker save`; the local image is removed afterwards."""
    reference = build_busybox(client, f"tytest/{name}", "src")
    path = folder / f"{name}.tar"
    subprocess.run(["docker", "save", "-o", str(path), reference], check=True, capture_output=True)
    subprocess.run(["docker", "rmi", reference], check=True, capture_output=True)
    return path


async def upload(api: httpx.AsyncClient, path: Path, name: str, version: str, raw: bool = False) -> Any:
    params = {"image_name": name, "version": version, "detail": "e2e", "image_url": f"http://x/{name}"}
    with path.open("rb") as handle:
        if raw:
            headers = {"Content-Type": "application/x-tar"}
            body = file_chunks(path)
            response = await api.post("/image/uploadImage", params=params, content=body, headers=headers)
        else:
            files = {"file": (path.name, handle, "application/x-tar")}
            response = await api.post("/image/uploadImage", params=params, files=files)
    return response.json()


async def file_chunks(path: Path, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while data := await asyncio.to_thread(handle.read, size):
            yield data


async def docker_cli(*args: str) -> bytes:
    done = await asyncio.to_thread(subprocess.run, ["docker", *args], check=True, capture_output=True)
    return done.stdout


async def delete(api: httpx.AsyncClient, image: str, version: str | None = None) -> Any:
    if version is None:
        return (await api.delete("/image/deleteByImage", params={"image": image})).json()
    params = {"image": image, "imageVersion": version}
    return (await api.delete("/image/deleteByImageVersion", params=params)).json()


async def finished(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async def final() -> dict[str, Any] | None:
        job = (await api.get("/task/status", params={"jobid": job_id})).json()["info"][0]
        return job if job.get("state") in (3, 4) else None

    return await eventually(final, timeout=60)


async def pushed(api: httpx.AsyncClient, path: Path, name: str, version: str, raw: bool = False) -> Any:
    answer = await upload(api, path, name, version, raw)
    assert answer["code"] == 200, answer
    job = await finished(api, answer["data"]["jobid"])
    assert job["state"] == 3, job
    return job


async def search(api: httpx.AsyncClient, word: str, spelling: str = "wordKey") -> list[dict[str, Any]]:
    answer = (await api.get("/image/search", params={spelling: word})).json()
    assert answer["code"] == 200, answer
    data: list[dict[str, Any]] = answer["data"]
    return data


async def manifest_status(platform: Platform, name: str, tag: str) -> int:
    """What the platform's registry says of a manifest (Registry HTTP API V2): 200 there, 404 gone."""
    return (await manifest(platform, name, tag))[0]


async def manifest(platform: Platform, name: str, tag: str) -> tuple[int, str]:
    """(HTTP status, Docker-Content-Digest) of a manifest in the platform's registry."""
    accept = ", ".join(
        [
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
        ]
    )
    # The registry asks for a token (from the API's token service): the imager's, who pushes and deletes.
    async with registry_http(platform) as registry:
        answer = await registry.head(f"/v2/{name}/manifests/{tag}", headers={"Accept": accept})
    return answer.status_code, answer.headers.get("Docker-Content-Digest", "")


def rewrite(source: Path, target: Path, change: dict[str, bytes]) -> Path:
    """A copy of a tar with some members' contents replaced."""
    with tarfile.open(source) as old, tarfile.open(target, "w") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name in change:
                data = change[member.name]
                member.size = len(data)
            new.addfile(member, io.BytesIO(data) if data is not None else None)
    return target


def layer_member(path: Path) -> str:
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    return str(manifest[0]["Layers"][0])


@pytest.fixture
def tars(tmp_path: Path, docker_client: docker.DockerClient) -> Path:
    return tmp_path


async def test_upload_search_pull_and_delete(
    api: httpx.AsyncClient, platform: Platform, docker_client: docker.DockerClient, tars: Path
) -> None:
    name = f"tytest/{unique('img')}"
    tar = saved_tar(docker_client, tars, unique("src"))
    job = await pushed(api, tar, name, "v1.0")
    assert job["result"]["digest"].startswith("sha256:")
    assert job["result"]["reference"] == f"{platform.config.registry}/{name}:v1.0"

    [found] = await search(api, name.upper()[3:])
    assert found["name"] == name
    [entry] = found["versions"]
    assert entry["version"] == "v1.0"
    assert entry["digest"] == job["result"]["digest"]
    assert entry["layers"] == 1
    assert entry["size"] > 1_000_000
    assert entry["detail"] == "e2e"
    assert entry["image_url"] == f"http://x/{name}"
    assert len(entry["uploadtime"]) == 19
    assert [i["name"] for i in await search(api, name, "wordkey")] == [name]
    assert await search(api, unique("nothing")) == []

    # The pull is real: the image is not on this machine any more.
    reference = f"{platform.config.registry}/{name}:v1.0"
    await asyncio.to_thread(docker_as, platform, "agent", "pull", reference)
    assert await docker_cli("run", "--rm", reference, "cat", "/data/hello.txt") == b"hello from tingyu\n"
    await docker_cli("rmi", reference)

    again = await upload(api, tar, name, "v1.0")
    assert again["code"] == "TY0024", again

    deleted = (
        await api.delete("/image/deleteByImageVersion", params={"image": name, "imageVersion": "v1.0"})
    ).json()
    assert deleted["code"] == 200, deleted
    assert await search(api, name) == []
    async with registry_http(platform) as registry:
        gone = await registry.head(f"/v2/{name}/manifests/v1.0")
    assert gone.status_code == 404
    missing = await delete(api, name)
    assert missing["code"] == "TY0020", missing


async def test_delete_refused_while_a_container_uses_it(
    api: httpx.AsyncClient, bus: Bus, docker_client: docker.DockerClient, tars: Path, platform: Platform
) -> None:
    name = unique("inuse")
    tar = saved_tar(docker_client, tars, unique("src"))
    await asyncio.gather(pushed(api, tar, name, "1"), pushed(api, tar, name, "2", raw=True))
    [found] = await search(api, name)
    assert sorted(v["version"] for v in found["versions"]) == ["1", "2"]
    versions = {v["version"]: v["digest"] for v in found["versions"]}

    # What the deployer keeps for a container created from the catalog (bucket ty_desired).
    node, deployment = f"tingyu-{'0' * 24}{unique('')[1:]}"[:39], unique("web")
    spec = ContainerSpec(image=name, imageversion="1", image_ref=f"127.0.0.1/{name}:1")
    store = DesiredStore(bus)
    await store.put(node, DesiredContainer(name=deployment, spec=spec, job_id="j", created_at=0.0))
    try:
        refused = (
            await api.delete("/image/deleteByImageVersion", params={"image": name, "imageVersion": "1"})
        ).json()
        assert (refused["code"], refused["msg"]) == ("TY0022", "镜像正在被容器使用,不能删除!"), refused
        assert refused["detail"] == f"{name}:1 is used by: {deployment}", refused
        whole = await delete(api, name)
        assert whole["code"] == "TY0022", whole
        other = (
            await api.delete("/image/deleteByImageVersion", params={"image": name, "imageVersion": "2"})
        ).json()
        assert other["code"] == 200, other
        # In the registry itself v1 must stay. The registry deletes manifests only by digest, so v2's
        # tag is gone unless it is the very manifest v1 still needs (one tar uploaded twice).
        kept_status, kept_digest = await manifest(platform, name, "1")
        assert kept_status == 200
        assert kept_digest == versions["1"]
        left = await manifest(platform, name, "2")
        assert left in {(404, ""), (200, kept_digest)}, left
        [kept] = await search(api, name)
        assert [v["version"] for v in kept["versions"]] == ["1"]
    finally:
        await store.remove(node, deployment)
    unknown = (
        await api.delete("/image/deleteByImageVersion", params={"image": name, "imageVersion": "9"})
    ).json()
    assert unknown["code"] == "TY0021", unknown
    done = await delete(api, name)
    assert done["code"] == 200, done
    assert await search(api, name) == []
    assert await manifest_status(platform, name, "1") == 404


async def test_corrupt_layer_is_refused_and_nothing_is_stored(
    api: httpx.AsyncClient, platform: Platform, docker_client: docker.DockerClient, tars: Path
) -> None:
    name = unique("corrupt")
    tar = saved_tar(docker_client, tars, unique("src"))
    member = layer_member(tar)
    with tarfile.open(tar) as source:
        layer = bytearray(source.extractfile(member).read())  # type: ignore[union-attr]
    layer[-5000] ^= 0xFF
    corrupt = rewrite(tar, tars / "corrupt.tar", {member: bytes(layer)})
    answer = await upload(api, corrupt, name, "1")
    job = await finished(api, answer["data"]["jobid"])
    assert (job["state"], job["message"]) == (4, BAD_ARCHIVE), job
    assert "digest" in job["result"]["detail"]
    assert await search(api, name) == []
    async with registry_http(platform) as registry:
        tags = await registry.get(f"/v2/{name}/tags/list")
    assert tags.status_code == 404


async def test_truncated_and_foreign_files_are_refused(
    api: httpx.AsyncClient, docker_client: docker.DockerClient, tars: Path
) -> None:
    name = unique("trunc")
    tar = saved_tar(docker_client, tars, unique("src"))
    truncated = tars / "truncated.tar"
    truncated.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    for raw in (False, True):  # multipart (length known) and a chunked body (length unknown)
        refused = await upload(api, truncated, name, "1", raw=raw)
        assert (refused["code"], refused["msg"], refused["tycode"]) == (500, BAD_ARCHIVE, "TY0023"), refused

    foreign = tars / "notes.txt"
    foreign.write_bytes(b"not a tar at all\n" * 100)
    refused = await upload(api, foreign, name, "2")
    assert (refused["code"], refused["msg"], refused["tycode"]) == (500, BAD_ARCHIVE, "TY0023"), refused

    plain = tars / "plain.tar"
    with tarfile.open(plain, "w") as out:
        out.add(foreign, arcname="notes.txt")
    refused = await upload(api, plain, name, "3")  # a tar, but not a `docker save`: refused before any job
    assert (refused["code"], refused["msg"], refused["tycode"]) == (500, BAD_ARCHIVE, "TY0023"), refused
    assert "manifest.json" in refused["detail"]
    assert await search(api, name) == []


async def test_bad_parameters(api: httpx.AsyncClient, tars: Path) -> None:
    empty = tars / "x.tar"
    empty.write_bytes(b"")
    missing = (await api.post("/image/uploadImage", params={"version": "1"}, content=b"x")).json()
    assert missing["code"] == "TY0002", missing
    bad = (await api.post("/image/uploadImage", params={"image_name": "Bad Name", "version": "1"})).json()
    assert bad["code"] == "TY0003", bad
    nothing = await upload(api, empty, unique("empty"), "1", raw=True)
    assert nothing["code"] == "TY0002", nothing
    assert (await api.delete("/image/deleteByImage")).json()["code"] == "TY0002"


@pytest.mark.skipif(
    importlib.util.find_spec("tingyu.deployer") is None or importlib.util.find_spec("tingyu.agent") is None,
    reason="needs the deployer and the agent",
)
async def test_deploy_from_catalog_after_removing_local_copy(
    api: httpx.AsyncClient, platform: Platform, docker_client: docker.DockerClient, node_uuid: str, tars: Path
) -> None:
    name = unique("deploy")
    tar = saved_tar(docker_client, tars, unique("src"))
    await pushed(api, tar, name, "1")
    deployment = unique("d")
    item = {"deploymentname": deployment, "uuid": node_uuid, "image": name, "imageversion": "1"}
    created = (await api.post("/container/create", json=[item])).json()
    job = await finished(api, created["data"][0]["jobid"])
    assert job["state"] == 3, job
    shown = (await api.post("/container/get", params={"name": deployment})).json()
    assert f"{platform.config.registry}/{name}:1" in json.dumps(shown)
    attrs = docker_client.api.inspect_container(deployment)  # what really runs, not what the API says
    assert attrs["State"]["Running"]
    assert attrs["Config"]["Image"] == f"{platform.config.registry}/{name}:1"
    assert docker_client.images.get(attrs["Image"]).id == attrs["Image"]
    refused = await delete(api, name)
    assert (refused["code"], refused["msg"]) == ("TY0022", "镜像正在被容器使用,不能删除!"), refused
    assert refused["detail"] == f"{name} is used by: {deployment}", refused
    not_in_catalog = {**item, "deploymentname": unique("d"), "imageversion": "9"}
    answer = (await api.post("/container/create", json=[not_in_catalog])).json()
    assert answer["data"][0]["code"] == 500, answer
    assert answer["data"][0]["message"] == f"image '{name}' has no version '9' in the catalog", answer
    assert "jobid" not in answer["data"][0]
    assert not docker_client.containers.list(
        all=True, filters={"name": f"^{not_in_catalog['deploymentname']}$"}
    )
    removed = (await api.delete("/container/delete", params={"name": deployment})).json()
    await finished(api, removed["data"][0]["jobid"])
    done = await delete(api, name)
    assert done["code"] == 200, done


async def test_cli_push_ls_rm(
    api: httpx.AsyncClient, platform: Platform, docker_client: docker.DockerClient, tars: Path
) -> None:
    name = unique("cli")
    tar = saved_tar(docker_client, tars, unique("src"))
    cli = [sys.executable, "-m", "tingyu.cli.main", "image", "--api", platform.config.api_url]

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TINGYU_TOKEN": ADMIN_TOKEN}
        return await asyncio.to_thread(subprocess.run, [*cli, *args], capture_output=True, text=True, env=env)

    pushed_ = await run("push", str(tar), "--name", name, "--version", "1")
    assert pushed_.returncode == 0, pushed_.stderr
    assert f"{platform.config.registry}/{name}:1 sha256:" in pushed_.stdout
    assert "100.0%" in pushed_.stderr
    listed = await run("ls", name)
    assert name in listed.stdout
    again = await run("push", str(tar), "--name", name, "--version", "1")
    assert again.returncode == 1
    assert "TY0024" in again.stderr
    assert await manifest_status(platform, name, "1") == 200
    removed = await run("rm", name, "--version", "1")
    assert removed.returncode == 0, removed.stderr
    assert await search(api, name) == []
    assert await manifest_status(platform, name, "1") == 404


def as_oci_layout(source: Path, target: Path) -> Path:
    """The same image in the layout Docker 25+ `docker save` writes (index.json, blobs/sha256/...)."""
    with tarfile.open(source) as tar:
        entry = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = tar.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
        layers = [tar.extractfile(name).read() for name in entry["Layers"]]  # type: ignore[union-attr]

    def descriptor(data: bytes, media_type: str) -> dict[str, Any]:
        return {
            "mediaType": media_type,
            "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [descriptor(x, "application/vnd.oci.image.layer.v1.tar") for x in layers],
        }
    ).encode()
    top = descriptor(manifest, "application/vnd.oci.image.manifest.v1+json")
    with tarfile.open(target, "w") as out:
        for data in (config, *layers, manifest):
            info = tarfile.TarInfo("blobs/sha256/" + hashlib.sha256(data).hexdigest())
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
        for name, data in (
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", json.dumps({"schemaVersion": 2, "manifests": [top]}).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return target


async def test_oci_layout_upload_is_pullable(
    api: httpx.AsyncClient, platform: Platform, docker_client: docker.DockerClient, tars: Path
) -> None:
    name = unique("oci")
    tar = as_oci_layout(saved_tar(docker_client, tars, unique("src")), tars / "oci.tar")
    job = await pushed(api, tar, name, "1")
    assert job["result"]["format"] == "oci"
    reference = f"{platform.config.registry}/{name}:1"
    await asyncio.to_thread(docker_as, platform, "agent", "pull", reference)
    assert await docker_cli("run", "--rm", reference, "cat", "/data/hello.txt") == b"hello from tingyu\n"
    await docker_cli("rmi", reference)
    assert (await delete(api, name))["code"] == 200
