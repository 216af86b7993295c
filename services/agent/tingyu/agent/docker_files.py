"""Reading one file out of a container through Docker's archive API, without holding it in memory.

`HEAD /containers/{id}/archive` answers only the stat header, so a directory or an oversized file
is refused before a byte of it is sent; `GET` then streams a tar whose only member is the file.
Everything here blocks: it runs in threads.
"""

from __future__ import annotations

import base64
import io
import json
import posixpath
import tarfile
from collections.abc import Iterator
from typing import Any

from docker import APIClient

from tingyu.agent.runtime import FileTooLarge, RuntimeFailure, RuntimeFile

CHUNK = 64 * 1024
MAX_LINK_HOPS = 8
# Go's os.FileMode type bits, as Docker reports them in the stat header.
_MODE_DIR = 1 << 31
_MODE_SYMLINK = 1 << 27
_MODE_NOT_REGULAR = _MODE_DIR | _MODE_SYMLINK | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)


def open_file(api: APIClient, container_id: str, path: str, limit: int) -> RuntimeFile:
    """The regular file at `path` (a symlink is followed to its target), ready to be read."""
    stat = _stat(api, container_id, path)
    for _ in range(MAX_LINK_HOPS):
        if not int(stat.get("mode", 0)) & _MODE_SYMLINK:
            break
        # Docker resolves the whole chain inside the container's root: linkTarget is absolute.
        target = str(stat.get("linkTarget") or "")
        if not target.startswith("/"):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        path = target
        stat = _stat(api, container_id, path)
    mode = int(stat.get("mode", 0))
    if mode & _MODE_DIR:
        raise RuntimeFailure(f"{path} is a directory, not a file")
    if mode & _MODE_NOT_REGULAR:
        raise RuntimeFailure(f"{path} is not a regular file")
    size = int(stat.get("size", 0))
    _check_size(path, size, limit)
    chunks, _stat_again = api.get_archive(container_id, path, chunk_size=CHUNK)
    return RuntimeFile(name=posixpath.basename(path), size=size, reader=_MemberReader(chunks, path, limit))


def _stat(api: APIClient, container_id: str, path: str) -> dict[str, Any]:
    # Unversioned paths are served at the engine's own API version.
    response = api.head(
        f"{api.base_url}/containers/{container_id}/archive", params={"path": path}, timeout=api.timeout
    )
    if response.status_code == 404:
        raise RuntimeFailure(f"{path}: no such file or directory in the container")
    if response.status_code >= 400:
        raise RuntimeFailure(f"the engine could not read {path} (HTTP {response.status_code})")
    header = response.headers.get("X-Docker-Container-Path-Stat", "")
    stat: dict[str, Any] = json.loads(base64.b64decode(header)) if header else {}
    return stat


def _check_size(path: str, size: int, limit: int) -> None:
    if size > limit:
        raise FileTooLarge(f"{path} is {size} bytes, over the limit of {limit} bytes")


class _ChunkReader(io.RawIOBase):
    """A blocking byte stream over docker-py's iterator of chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            self.pending = next(self.chunks, b"")
            if not self.pending:
                return 0
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


class _MemberReader(io.RawIOBase):
    """The bytes of the tar's one member; the tar is read as a stream (mode `r|`)."""

    def __init__(self, chunks: Iterator[bytes], path: str, limit: int) -> None:
        self.chunks = chunks
        # Closed in close(): the tar lives as long as the reader.
        self.tar = tarfile.open(fileobj=_ChunkReader(chunks), mode="r|")  # noqa: SIM115
        member = self.tar.next()
        if member is None or not member.isreg():
            self.close()
            raise RuntimeFailure(f"{path} changed while it was being read; it is no longer a regular file")
        _check_size(path, member.size, limit)
        extracted = self.tar.extractfile(member)
        if extracted is None:
            self.close()
            raise RuntimeFailure(f"{path} could not be read")
        self.member = extracted

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.member.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.tar.close()
            close = getattr(self.chunks, "close", None)
            if close is not None:
                close()
        super().close()
