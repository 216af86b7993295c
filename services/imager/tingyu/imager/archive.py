"""Checking a spooled `docker save` tar before anything is pushed (legacy archive or Docker 25+ OCI layout).

The tar's headers and layout are read by `tingyu.common.imagetar`, the same code the API runs
while the upload streams in. Here the spooled file is scanned again (seeking past member data),
then every blob the manifest names is hashed where its header says it is, and must match its
digest (legacy layers the config's `diff_ids`). The upload's length bounds every member, so the
work is bounded by the bytes that were uploaded. Anything wrong is `BadImageArchive`, the
contract's message with a `detail` that says what.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tingyu.common.imagetar import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Layout,
    Member,
    Part,
    TarIndex,
    TarScanner,
    bad,
    read_layout,
)

__all__ = [
    "DOCKER_MANIFEST",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Blob",
    "ImageArchive",
    "open_archive",
    "read_member",
]

READ_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Blob:
    """A config or layer blob: its digest, size, and where its bytes are in the tar."""

    digest: str
    size: int
    media_type: str
    offset: int


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


def open_archive(path: Path, deadline: float | None = None) -> ImageArchive:
    """Scan, parse and verify the tar at `path` (blocking: run it in a thread).

    `deadline` (monotonic) bounds the hashing: past it, TimeoutError.
    """
    try:
        with path.open("rb") as handle:
            index = scan(handle, path.stat().st_size)
            layout = read_layout(index, lambda member: _read(handle, member))
            return _Verifier(path, handle, deadline).archive(layout)
    except OSError as exc:
        raise bad(f"the spooled tar cannot be read: {exc}") from exc


def scan(handle: Any, size: int) -> TarIndex:
    """Every member header of the tar in `handle`; member data is sought past, not read."""
    scanner = TarScanner(size)
    while not scanner.done:
        if skip := scanner.skippable():
            handle.seek(skip, 1)
            scanner.skip(skip)
            continue
        data = handle.read(64 * 1024)
        if not data:
            break
        scanner.feed(data)
    return scanner.finish()


def read_member(path: Path, blob: Blob, chunk: int = READ_BYTES) -> Generator[bytes, None, None]:
    """The bytes of one blob, in chunks (blocking)."""
    with path.open("rb") as handle:
        handle.seek(blob.offset)
        left = blob.size
        while left:
            data = handle.read(min(chunk, left))
            if not data:
                raise bad(f"the tar ends inside blob {blob.digest}")
            left -= len(data)
            yield data


def _read(handle: Any, member: Member) -> bytes:
    handle.seek(member.offset)
    data: bytes = handle.read(member.size)
    return data


class _Verifier:
    """Hashes each member once, where its header says its bytes are."""

    def __init__(self, path: Path, handle: Any, deadline: float | None) -> None:
        self.path = path
        self.handle = handle
        self.deadline = deadline
        self.hashed: dict[int, str] = {}

    def archive(self, layout: Layout) -> ImageArchive:
        for part in layout.checked:
            self.blob(part)
        config = self.blob(layout.config)
        layers = tuple(self.blob(part) for part in layout.layers)
        if layout.layout == "oci":
            return ImageArchive(self.path, layout.manifest, layout.media_type, config, layers, "oci")
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": _descriptor(config),
            "layers": [_descriptor(layer) for layer in layers],
        }
        body = json.dumps(manifest, separators=(",", ":")).encode()
        return ImageArchive(self.path, body, DOCKER_MANIFEST, config, layers, "docker")

    def blob(self, part: Part) -> Blob:
        member = part.member
        digest = self.hash(member)
        if part.digest is not None and digest != part.digest:
            raise bad(f"{member.name} has digest {digest}, the archive says {part.digest}")
        if part.size is not None and part.size != member.size:
            raise bad(f"{member.name} has {member.size} bytes, its descriptor says {part.size}")
        return Blob(digest, member.size, part.media_type, member.offset)

    def hash(self, member: Member) -> str:
        if member.offset not in self.hashed:
            digest = hashlib.sha256()
            self.handle.seek(member.offset)
            left = member.size
            while left:
                if self.deadline is not None and time.monotonic() > self.deadline:
                    raise TimeoutError(f"hashing {member.name} ran past the push timeout")
                data = self.handle.read(min(READ_BYTES, left))
                if not data:
                    raise bad(f"the tar ends inside {member.name} (truncated)")
                digest.update(data)
                left -= len(data)
            self.hashed[member.offset] = f"sha256:{digest.hexdigest()}"
        return self.hashed[member.offset]


def _descriptor(blob: Blob) -> dict[str, Any]:
    return {"mediaType": blob.media_type, "size": blob.size, "digest": blob.digest}
