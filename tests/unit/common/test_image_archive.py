"""The `docker save` reader on small archives made by factories (legacy layout and Docker 25+ OCI layout).

The factories for hostile tars (sparse, links, devices) are used by tests/abuse as well.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tingyu.common.errors import BadImageArchive
from tingyu.common.imagetar import TarScanner, kept_reader, read_layout
from tingyu.imager.archive import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, open_archive, read_member

PIB = 1 << 50


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


def write_tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    """Files, then symlinks (`name -> target`, relative to the link's folder)."""
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def sparse_header(name: str, stored: int, claimed: int) -> bytes:
    """An old-GNU sparse header: `stored` bytes in the tar that expand to `claimed` bytes."""
    info = tarfile.TarInfo(name)
    info.type, info.size = tarfile.GNUTYPE_SPARSE, stored
    block = bytearray(info.tobuf(tarfile.GNU_FORMAT)[-512:])
    block[386:398] = b"%011o\0" % 0  # one data region at offset 0 ...
    block[398:410] = b"%011o\0" % stored  # ... of `stored` bytes
    block[483:495] = b"\x80" + claimed.to_bytes(11, "big")  # real size, base-256
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def hostile(path: Path, layer_member: bytes | None = None, links: dict[str, str] | None = None) -> Path:
    """A legacy `docker save` layout whose one layer is `0/layer.tar`: the raw member given (a
    header plus data) or the symlinks given; everything else is well formed."""
    data = layer("x")
    config = config_of([data])
    config_name = f"{sha(config)[7:]}.json"
    manifest = json.dumps([{"Config": config_name, "Layers": ["0/layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    body = out.getvalue().rstrip(b"\0")
    body += b"\0" * (-len(body) % 512) + (layer_member or b"") + b"\0" * 1024
    path.write_bytes(body)
    return path


def sparse_tar(path: Path) -> Path:
    """2.5 KB on disk; its layer claims 1 PiB (a reader that expands sparse members hashes for days)."""
    return hostile(path, sparse_header("0/layer.tar", 512, PIB) + b"\0" * 512)


def device_tar(path: Path) -> Path:
    info = tarfile.TarInfo("0/layer.tar")
    info.type = tarfile.CHRTYPE
    return hostile(path, info.tobuf(tarfile.USTAR_FORMAT))


def oversized_tar(path: Path) -> Path:
    """A plain member whose header claims 1 PiB (base-256 size) in a tar of a few KB."""
    info = tarfile.TarInfo("0/layer.tar")
    info.size = PIB
    return hostile(path, info.tobuf(tarfile.GNU_FORMAT) + b"\0" * 512)


def link_tar(path: Path, target: str, extra: dict[str, str] | None = None) -> Path:
    return hostile(path, links={"0/layer.tar": target, **(extra or {})})


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


# --- hostile members ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (sparse_tar, "sparse"),
        (oversized_tar, "more than the upload holds"),
        (device_tar, "device"),
        (lambda p: link_tar(p, "../1/layer.tar"), "dangling"),
        (lambda p: link_tar(p, "../1/layer.tar", {"1/layer.tar": "../0/layer.tar"}), "loop"),
        (lambda p: link_tar(p, "layer.tar"), "loop"),
        (lambda p: link_tar(p, "../../etc/passwd"), "outside the archive"),
        (lambda p: link_tar(p, "/etc/passwd"), "outside the archive"),
    ],
)
def test_hostile_members_are_refused_by_both_readers(tmp_path: Path, make: object, reason: str) -> None:
    path = make(tmp_path / "h.tar")  # type: ignore[operator]
    assert path.stat().st_size <= 4096
    with pytest.raises(BadImageArchive, match="上传失败") as caught:
        open_archive(path)
    assert reason in (caught.value.detail or ""), caught.value.detail
    with pytest.raises(BadImageArchive) as streamed:
        stream_check(path.read_bytes(), chunk=100)
    assert reason in (streamed.value.detail or ""), streamed.value.detail


def test_a_pax_size_cannot_claim_more_than_the_upload(tmp_path: Path) -> None:
    path = tmp_path / "pax.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("big")
        info.pax_headers = {"size": str(PIB)}
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(BadImageArchive, match="上传失败") as caught:
        stream_check(path.read_bytes(), chunk=512)
    assert "more than the upload holds" in (caught.value.detail or "")


def test_a_legacy_layer_linked_to_another_layers_tar_is_followed(tmp_path: Path) -> None:
    """`docker save` writes a repeated layer once and links the second `layer.tar` to the first."""
    data = layer("shared")
    config = config_of([data, data])
    config_name = f"{sha(config)[7:]}.json"
    names = ["a/layer.tar", "b/layer.tar"]
    manifest = json.dumps([{"Config": config_name, "Layers": names}]).encode()
    members = {"a/layer.tar": data, config_name: config, "manifest.json": manifest}
    path = write_tar(tmp_path / "linked.tar", members, links={"b/layer.tar": "../a/layer.tar"})
    archive = open_archive(path)
    assert [b.digest for b in archive.layers] == [sha(data), sha(data)]
    assert len(archive.blobs) == 2  # the shared layer is pushed once, then the config
    assert b"".join(read_member(path, archive.layers[1])) == data
    stream_check(path.read_bytes(), chunk=333)


@pytest.mark.parametrize("chunk", [1, 511, 512, 4096])
@pytest.mark.parametrize("kind", ["legacy", "oci"])
def test_the_streaming_check_accepts_what_the_imager_accepts(tmp_path: Path, chunk: int, kind: str) -> None:
    layers = [layer("base"), layer("app" * 300)]
    path = legacy(tmp_path / "a.tar", layers) if kind == "legacy" else oci(tmp_path / "o.tar", layers)
    assert stream_check(path.read_bytes(), chunk).layout == open_archive(path).layout


def test_the_streaming_check_refuses_truncated_and_foreign_tars(tmp_path: Path) -> None:
    whole = legacy(tmp_path / "a.tar", [layer("x" * 5000)]).read_bytes()
    plain = write_tar(tmp_path / "p.tar", {"notes.txt": b"hi"}).read_bytes()
    for body, reason in (
        (whole[:3000], "more than the upload holds"),
        (plain, "neither manifest.json"),
        (b"not a tar at all\n" * 100, "not a tar header"),
    ):
        with pytest.raises(BadImageArchive) as caught:
            stream_check(body, chunk=700)
        assert reason in (caught.value.detail or ""), caught.value.detail
    with pytest.raises(BadImageArchive, match="上传失败") as cut:  # a body of unknown length, cut short
        stream_check(whole[:3000], chunk=700, bound=1 << 30)
    assert "truncated" in (cut.value.detail or "")


def stream_check(body: bytes, chunk: int, bound: int = 0) -> object:
    """What the API does with an upload: feed the scanner as chunks arrive, then check the layout."""
    scanner = TarScanner(bound or len(body), keep=True)
    for start in range(0, len(body), chunk):
        scanner.feed(body[start : start + chunk])
    index = scanner.finish()
    return read_layout(index, kept_reader(index))
