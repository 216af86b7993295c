"""The `docker save` reader on small archives made by factories (legacy layout and Docker 25+ OCI layout)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tingyu.common.errors import BadImageArchive
from tingyu.imager.archive import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, open_archive


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(text: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("data/file.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def config_of(layers: list[bytes]) -> bytes:
    return json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]}}).encode()


def legacy(path: Path, layers: list[bytes], *, diff_ids: list[bytes] | None = None) -> Path:
    """The layout of `docker save` before Docker 25: <id>/layer.tar, <config hex>.json, manifest.json."""
    config = config_of(diff_ids or layers)
    config_name = f"{sha(config)[7:]}.json"
    names = [f"{i:064x}/layer.tar" for i in range(len(layers))]
    manifest = [{"Config": config_name, "RepoTags": ["x:1"], "Layers": names}]
    members = {config_name: config, **dict(zip(names, layers, strict=True))}
    return write_tar(path, {**members, "manifest.json": json.dumps(manifest).encode()})


def oci(path: Path, layers: list[bytes], *, wrap_in_index: bool = False) -> Path:
    """The layout of Docker 25+: index.json, oci-layout, blobs/sha256/* (and a manifest.json)."""
    config = config_of(layers)
    blobs = {sha(x): x for x in [config, *layers]}

    def descriptor(data: bytes, media_type: str) -> dict[str, object]:
        return {"mediaType": media_type, "digest": sha(data), "size": len(data)}

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [descriptor(x, "application/vnd.oci.image.layer.v1.tar") for x in layers],
        }
    ).encode()
    blobs[sha(manifest)] = manifest
    top = descriptor(manifest, OCI_MANIFEST)
    if wrap_in_index:
        attestation = {**top, "digest": "sha256:" + "0" * 64, "platform": {"os": "unknown"}}
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [attestation, top]})
        blobs[sha(index.encode())] = index.encode()
        top = descriptor(index.encode(), OCI_INDEX)
    members = {f"blobs/sha256/{d[7:]}": data for d, data in blobs.items()}
    members["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    members["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [top]}).encode()
    return write_tar(path, members)


def test_legacy_archive_becomes_a_schema2_manifest(tmp_path: Path) -> None:
    layers = [layer("base"), layer("app")]
    archive = open_archive(legacy(tmp_path / "a.tar", layers))
    manifest = json.loads(archive.manifest)
    assert (archive.layout, archive.media_type, manifest["mediaType"]) == (
        "docker",
        DOCKER_MANIFEST,
        DOCKER_MANIFEST,
    )
    assert [x["digest"] for x in manifest["layers"]] == [sha(x) for x in layers]
    assert archive.size == sum(len(x) for x in layers) + archive.config.size
    assert [b.digest for b in archive.blobs][-1] == archive.config.digest


@pytest.mark.parametrize("wrap", [False, True])
def test_oci_layout_keeps_its_manifest_bytes(tmp_path: Path, wrap: bool) -> None:
    layers = [layer("base")]
    archive = open_archive(oci(tmp_path / "o.tar", layers, wrap_in_index=wrap))
    assert (archive.layout, archive.media_type) == ("oci", OCI_MANIFEST)
    assert json.loads(archive.manifest)["layers"][0]["digest"] == sha(layers[0])
    assert len(archive.layers) == 1


def test_layer_that_does_not_match_its_diff_id_is_refused(tmp_path: Path) -> None:
    path = legacy(tmp_path / "a.tar", [layer("tampered")], diff_ids=[layer("original")])
    with pytest.raises(BadImageArchive, match="上传失败") as caught:
        open_archive(path)
    assert "digest" in (caught.value.detail or "")


def test_oci_blob_that_does_not_match_its_name_is_refused(tmp_path: Path) -> None:
    path = oci(tmp_path / "o.tar", [layer("base")])
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    blob = next(n for n, d in members.items() if d == layer("base"))
    members[blob] = layer("other")
    with pytest.raises(BadImageArchive):
        open_archive(write_tar(tmp_path / "bad.tar", members))


def test_truncated_missing_and_foreign_archives_are_refused(tmp_path: Path) -> None:
    whole = legacy(tmp_path / "a.tar", [layer("x" * 5000)])
    truncated = tmp_path / "t.tar"
    truncated.write_bytes(whole.read_bytes()[:3000])
    plain = write_tar(tmp_path / "p.tar", {"notes.txt": b"hi"})
    missing = write_tar(tmp_path / "m.tar", {"manifest.json": b'[{"Config":"c.json","Layers":[]}]'})
    garbage = tmp_path / "g.tar"
    garbage.write_bytes(b"\x00\x01" * 1000)
    for path in (truncated, plain, missing, garbage):
        with pytest.raises(BadImageArchive):
            open_archive(path)
