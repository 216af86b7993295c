"""Reading a `docker save` tar: the legacy Docker archive and the OCI layout of Docker 25+.

`open_archive` checks everything before anything is pushed: the tar reads to its end, every
blob the manifest names is present, and every blob hashes to its digest (legacy layers to the
`diff_ids` of their config). Anything else is `BadImageArchive` with the contract message and
a `detail` that says what was wrong.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tingyu.common.errors import BadImageArchive

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
# `docker save` keeps layers uncompressed; they are pushed as they are (no recompression).
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEXES = (OCI_INDEX, DOCKER_LIST)
READ_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Blob:
    """A config or layer blob: its digest, size and where it is in the tar."""

    digest: str
    size: int
    media_type: str
    member: str


@dataclass(frozen=True)
class ImageArchive:
    """A checked archive: the manifest to put and the blobs it needs."""

    path: Path
    manifest: bytes
    media_type: str
    config: Blob
    layers: tuple[Blob, ...]
    layout: str  # "docker" or "oci"

    @property
    def blobs(self) -> list[Blob]:
        """Config and layers, each digest once, in push order (layers first, config last)."""
        unique: dict[str, Blob] = {}
        for blob in (*self.layers, self.config):
            unique.setdefault(blob.digest, blob)
        return list(unique.values())

    @property
    def size(self) -> int:
        return sum(blob.size for blob in self.blobs)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


def bad(detail: str) -> BadImageArchive:
    return BadImageArchive(detail=detail)


def open_archive(path: Path) -> ImageArchive:
    """Parse and verify the tar at `path` (blocking: run it in a thread)."""
    try:
        with tarfile.open(path, "r:") as tar:
            return _Reader(path, tar).archive()
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as exc:
        raise bad(f"not a readable tar: {exc}") from exc


def read_member(path: Path, member: str, chunk: int = READ_BYTES) -> Generator[bytes, None, None]:
    """The bytes of one tar member, in chunks (blocking)."""
    with tarfile.open(path, "r:") as tar:
        handle = tar.extractfile(member)
        if handle is None:
            raise bad(f"{member} is not a file")
        with handle:
            while data := handle.read(chunk):
                yield data


class _Reader:
    """One pass over the tar's index, then one hash per blob."""

    def __init__(self, path: Path, tar: tarfile.TarFile) -> None:
        self.path = path
        self.tar = tar
        self.members = {_clean(m.name): m for m in tar.getmembers()}  # reads every header: finds truncation
        self.hashed: dict[str, tuple[str, int]] = {}

    def archive(self) -> ImageArchive:
        if "index.json" in self.members and "oci-layout" in self.members:
            return self._oci()
        if "manifest.json" in self.members:
            return self._docker()
        raise bad("neither manifest.json nor an OCI layout (index.json, oci-layout) is in the tar")

    # --- files --------------------------------------------------------------------------------

    def _open(self, name: str) -> IO[bytes]:
        member = self.members.get(_clean(name))
        if member is None:
            raise bad(f"{name} is named by the manifest but missing from the tar")
        handle = self.tar.extractfile(member)
        if handle is None:
            raise bad(f"{name} is not a regular file")
        return handle

    def _json(self, name: str, limit: int = 4 * 1024 * 1024) -> tuple[Any, bytes]:
        with self._open(name) as handle:
            raw = handle.read(limit + 1)
        if len(raw) > limit:
            raise bad(f"{name} is larger than {limit} bytes")
        try:
            return json.loads(raw), raw
        except ValueError as exc:
            raise bad(f"{name} is not JSON: {exc}") from exc

    def _hash(self, name: str) -> tuple[str, int]:
        """sha256 digest and size of a member (each member is read once)."""
        key = _clean(name)
        if key not in self.hashed:
            digest = hashlib.sha256()
            size = 0
            with self._open(name) as handle:
                while data := handle.read(READ_BYTES):
                    digest.update(data)
                    size += len(data)
            self.hashed[key] = (f"sha256:{digest.hexdigest()}", size)
        return self.hashed[key]

    # --- legacy Docker archive ---------------------------------------------------------------

    def _docker(self) -> ImageArchive:
        entries, _ = self._json("manifest.json")
        if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
            raise bad("manifest.json does not list an image")
        entry = entries[0]  # one image per upload: a multi-image tar pushes its first image
        config_name, layer_names = entry.get("Config"), entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layer_names, list):
            raise bad("manifest.json lacks Config or Layers")
        config_digest, config_size = self._hash(config_name)
        stem = Path(config_name).name.removesuffix(".json")
        if len(stem) == 64 and f"sha256:{stem}" != config_digest:
            raise bad(f"config {config_name} does not match its digest")
        config, _ = self._json(config_name)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") if isinstance(config, dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layer_names):
            raise bad("the config's rootfs.diff_ids do not match the manifest's layers")
        layers = []
        for name, diff_id in zip(layer_names, diff_ids, strict=True):
            digest, size = self._hash(str(name))
            if digest != diff_id:
                raise bad(f"layer {name} has digest {digest}, the config says {diff_id}")
            layers.append(Blob(digest, size, DOCKER_LAYER, _clean(str(name))))
        config_blob = Blob(config_digest, config_size, DOCKER_CONFIG, _clean(config_name))
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": _descriptor(config_blob),
            "layers": [_descriptor(layer) for layer in layers],
        }
        body = json.dumps(manifest, separators=(",", ":")).encode()
        return ImageArchive(self.path, body, DOCKER_MANIFEST, config_blob, tuple(layers), "docker")

    # --- OCI layout --------------------------------------------------------------------------

    def _oci(self) -> ImageArchive:
        index, _ = self._json("index.json")
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list) or not manifests:
            raise bad("index.json lists no manifest")
        return self._manifest(self._pick(manifests), depth=0)

    def _pick(self, descriptors: list[Any]) -> dict[str, Any]:
        """The first descriptor whose blob is in the tar and that is not an attestation."""
        for descriptor in descriptors:
            if not isinstance(descriptor, dict):
                continue
            platform = descriptor.get("platform") or {}
            if platform.get("os") == "unknown":
                continue
            if _blob_name(descriptor) in self.members:
                return descriptor
        raise bad("no manifest named by the index is in the tar")

    def _checked(self, descriptor: dict[str, Any]) -> str:
        """The member of a descriptor's blob after checking its digest and size."""
        name = _blob_name(descriptor)
        digest, size = self._hash(name)
        if digest != descriptor.get("digest"):
            raise bad(f"blob {name} has digest {digest}, its descriptor says {descriptor.get('digest')}")
        if descriptor.get("size") not in (None, size):
            raise bad(f"blob {name} has {size} bytes, its descriptor says {descriptor.get('size')}")
        return name

    def _manifest(self, descriptor: dict[str, Any], depth: int) -> ImageArchive:
        name = self._checked(descriptor)
        document, body = self._json(name)
        if not isinstance(document, dict):
            raise bad(f"manifest {name} is not an object")
        media_type = document.get("mediaType") or descriptor.get("mediaType") or OCI_MANIFEST
        if media_type in INDEXES or "manifests" in document:
            if depth > 2:
                raise bad("image indexes are nested too deeply")
            return self._manifest(self._pick(document.get("manifests") or []), depth + 1)
        config_d, layer_ds = document.get("config"), document.get("layers")
        if not isinstance(config_d, dict) or not isinstance(layer_ds, list):
            raise bad(f"manifest {name} lacks config or layers")
        config = self._blob(config_d)
        layers = tuple(self._blob(d) for d in layer_ds if isinstance(d, dict))
        return ImageArchive(self.path, body, str(media_type), config, layers, "oci")

    def _blob(self, descriptor: dict[str, Any]) -> Blob:
        member = self._checked(descriptor)
        digest, size = self._hash(member)
        return Blob(digest, size, str(descriptor.get("mediaType", "")), member)


def _clean(name: str) -> str:
    return name.removeprefix("./").lstrip("/")


def _blob_name(descriptor: dict[str, Any]) -> str:
    algorithm, _, hexdigest = str(descriptor.get("digest", "")).partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
        raise bad(f"unsupported digest {descriptor.get('digest')!r}")
    return f"blobs/sha256/{hexdigest}"


def _descriptor(blob: Blob) -> dict[str, Any]:
    return {"mediaType": blob.media_type, "size": blob.size, "digest": blob.digest}
