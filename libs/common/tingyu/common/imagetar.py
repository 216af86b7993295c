"""Reading a `docker save` tar as its bytes arrive: member headers, links, and the image layout.

One reader serves both sides of an upload. The API feeds it the body while it streams in and
answers the contract's upload error before it accepts anything; the imager runs it over the
spooled file, then hashes exactly the bytes the headers point at. Nothing here trusts a header:

- a member can never claim more bytes than the upload holds (`bound`), so no member is read,
  hashed or skipped past the upload's end;
- sparse members, devices, fifos and unknown member types are refused (`docker save` writes none);
- links are followed inside the archive only (`docker save` links a repeated legacy `layer.tar`
  to the first one); a link that dangles, loops or leaves the archive is refused;
- the contents of layers are never opened: a layer is a member like any other.

Every refusal is `BadImageArchive` (the contract's upload message) with a `detail` that says why.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tingyu.common.errors import BadImageArchive

BLOCK = 512
EXTENSION_LIMIT = 1024 * 1024  # a GNU long name or a pax header larger than this is not `docker save`'s
JSON_LIMIT = 4 * 1024 * 1024  # manifest, index and config documents
KEEP_BUDGET = 16 * 1024 * 1024  # JSON documents the streaming check keeps in memory, all together
LINK_HOPS = 16

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
# `docker save` keeps layers uncompressed; they are pushed as they are (no recompression).
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEXES = (OCI_INDEX, DOCKER_LIST)

_FILES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_KINDS = {tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "link"}
_DEVICES = (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE)
_EXTENSIONS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE)


def bad(detail: str) -> BadImageArchive:
    return BadImageArchive(detail=detail)


@dataclass(frozen=True)
class Member:
    """One tar entry: `offset` is where its data starts in the tar, `size` how many bytes it has."""

    name: str
    kind: str  # file, dir, symlink or link
    size: int
    offset: int
    linkname: str = ""


@dataclass
class TarIndex:
    """Every member of a tar by name (a later entry replaces an earlier one, as tar does)."""

    members: dict[str, Member]
    kept: dict[str, bytes] = field(default_factory=dict)  # small JSON documents, when the scanner kept them

    def __contains__(self, name: str) -> bool:
        return clean(name) in self.members

    def resolve(self, name: str) -> Member:
        """The regular file `name` is or links to, following links inside the archive only."""
        key, path = clean(name), [clean(name)]
        for _ in range(LINK_HOPS):
            member = self.members.get(key)
            if member is None:
                if len(path) == 1:
                    raise bad(f"{name} is named by the manifest but missing from the tar")
                raise bad(f"{name} links to {key}, which is not in the tar (dangling link)")
            if member.kind == "file":
                return member
            if member.kind == "dir":
                raise bad(f"{key} is a directory, not a file")
            key = _link_target(member)
            if key in path:
                raise bad(f"{name} is a link loop ({' -> '.join([*path, key])})")
            path.append(key)
        raise bad(f"{name} goes through more than {LINK_HOPS} links")


def _link_target(member: Member) -> str:
    """A symlink is relative to its own folder, a hard link to the archive's root."""
    if member.linkname.startswith("/"):
        raise bad(f"{member.name} links outside the archive ({member.linkname})")
    base = posixpath.dirname(member.name) if member.kind == "symlink" else ""
    target = posixpath.normpath(posixpath.join(base, member.linkname))
    if target == ".." or target.startswith("../"):
        raise bad(f"{member.name} links outside the archive ({member.linkname})")
    return target


class TarScanner:
    """An incremental tar header reader: `feed` bytes as they come, `finish` at the end.

    `bound` is the most bytes the upload can hold (its length, or the upload limit when the length
    is not known yet): a member whose data would end past it is refused at its header. With `keep`,
    members that look like JSON documents (first byte `{` or `[`, at most `JSON_LIMIT`) are kept
    in memory, up to `KEEP_BUDGET` in all, so the layout can be checked without a second pass.
    """

    def __init__(self, bound: int, *, keep: bool = False) -> None:
        self.bound = bound
        self.keep = keep
        self.position = 0  # bytes consumed so far
        self.done = False  # the end-of-archive block was read
        self.members: dict[str, Member] = {}
        self.kept: dict[str, bytes] = {}
        self._kept_bytes = 0
        self._header = bytearray()
        self._member: Member | None = None
        self._ext_type = b""
        self._remaining = 0  # data and padding of the current member still to come
        self._collect: bytearray | None = None
        self._next: dict[str, str] = {}  # long name, long link and pax fields for the next header

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self.done:
                self.position += len(view)
                return
            if self._remaining:
                take = min(self._remaining, len(view))
                self._take_data(view[:take])
                view = view[take:]
                continue
            take = min(BLOCK - len(self._header), len(view))
            self._header += view[:take]
            self.position += take
            view = view[take:]
            if len(self._header) == BLOCK:
                block = bytes(self._header)
                self._header.clear()
                self._on_header(block)

    def skippable(self) -> int:
        """Data bytes a reader of a file may seek past instead of feeding (nothing is kept of them)."""
        return self._remaining if self._collect is None else 0

    def skip(self, count: int) -> None:
        count = min(count, self.skippable())
        self._remaining -= count
        self.position += count
        if not self._remaining:
            self._end_member()

    def finish(self) -> TarIndex:
        """The index, once every byte is in; a tar cut short anywhere is refused."""
        if self._remaining or self._header or self._next:
            where = self._member.name if self._member else "a header"
            raise bad(f"the tar ends inside {where} after {self.position} bytes (truncated)")
        if not self.members:
            raise bad("the tar holds no member")
        return TarIndex(dict(self.members), dict(self.kept))

    # --- internals --------------------------------------------------------------------------------

    def _take_data(self, chunk: memoryview) -> None:
        if self._collect is not None:
            if not self._collect and not self._ext_type and chunk[:1].tobytes() not in (b"{", b"["):
                self._collect = None  # not a JSON document: a layer or a plain file
            else:
                self._collect += chunk
        self._remaining -= len(chunk)
        self.position += len(chunk)
        if not self._remaining:
            self._end_member()

    def _on_header(self, block: bytes) -> None:
        offset = self.position - BLOCK
        if block.count(0) == BLOCK:
            self.done = True  # end of archive; what follows is padding
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise bad(f"the block at byte {offset} is not a tar header ({exc})") from exc
        name = self._next.pop("path", "") or info.name
        linkname = self._next.pop("linkpath", "") or info.linkname
        size = int(self._next.pop("size", info.size))
        sparse = info.type == tarfile.GNUTYPE_SPARSE or self._next.pop("sparse", "")
        self._next.clear()
        if size < 0:
            raise bad(f"{name} claims a negative size")
        if self.position + size > self.bound:
            raise bad(f"{name} claims {size} bytes, more than the upload holds ({self.bound} bytes)")
        if sparse:
            raise bad(f"{name} is a sparse file; docker save writes none")
        if info.type in _DEVICES:
            raise bad(f"{name} is a device or a fifo; docker save writes none")
        self._ext_type = info.type if info.type in _EXTENSIONS else b""
        if self._ext_type:
            if size > EXTENSION_LIMIT:
                raise bad(f"an extended header of {size} bytes precedes {name}")
            self._member = Member(name, "extension", size, self.position)
            self._collect = bytearray()
        elif info.type in _FILES or info.type in _KINDS:
            kind = "file" if info.type in _FILES else _KINDS[info.type]
            self._member = Member(clean(name), kind, size, self.position, linkname)
            self.members[self._member.name] = self._member
            wanted = self.keep and kind == "file" and size <= JSON_LIMIT
            fits = self._kept_bytes + size <= KEEP_BUDGET
            self._collect = bytearray() if wanted and fits and size else None
        else:
            raise bad(f"{name} has member type {info.type!r}, which docker save does not write")
        self._remaining = size + (-size % BLOCK)
        if not self._remaining:
            self._end_member()

    def _end_member(self) -> None:
        member, data = self._member, self._collect
        self._collect = None
        if member is None or data is None:
            return
        content = bytes(data[: member.size])
        if self._ext_type:
            self._extension(self._ext_type, content)
        else:
            self.kept[member.name] = content
            self._kept_bytes += len(content)

    def _extension(self, kind: bytes, content: bytes) -> None:
        text = content.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        if kind == tarfile.GNUTYPE_LONGNAME:
            self._next["path"] = text
        elif kind == tarfile.GNUTYPE_LONGLINK:
            self._next["linkpath"] = text
        elif kind == tarfile.XHDTYPE:
            self._next.update(_pax(content))
        # A global pax header (git archive's comment) says nothing about one member: ignored.


def _pax(content: bytes) -> dict[str, str]:
    """The fields of a pax extended header that matter here: path, linkpath, size, sparse."""
    out: dict[str, str] = {}
    position = 0
    while position < len(content):
        length_text, space, _ = content[position : position + 20].partition(b" ")
        if not space or not length_text.isdigit() or int(length_text) <= len(length_text) + 1:
            raise bad("a pax extended header does not parse")
        record = content[position : position + int(length_text)]
        position += int(length_text)
        key, equals, value = record[len(length_text) + 1 :].removesuffix(b"\n").partition(b"=")
        if not equals:
            raise bad("a pax extended header does not parse")
        name = key.decode("utf-8", "surrogateescape")
        if name in ("path", "linkpath"):
            out[name] = value.decode("utf-8", "surrogateescape")
        elif name == "size":
            if not value.isdigit():
                raise bad("a pax extended header has a size that is not a number")
            out["size"] = value.decode()
        elif name.startswith("GNU.sparse."):
            out["sparse"] = "1"
    return out


def clean(name: str) -> str:
    return name.removeprefix("./").lstrip("/").rstrip("/")


# --- The image layout ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """A blob the image needs: the member that holds it and what it must hash to (when known)."""

    member: Member
    media_type: str
    digest: str | None = None  # None: known only once hashed (a legacy config without a hex name)
    size: int | None = None


@dataclass(frozen=True)
class Layout:
    """What the tar's manifest names, before any digest is checked."""

    layout: str  # "docker" or "oci"
    config: Part
    layers: tuple[Part, ...]
    manifest: bytes = b""  # OCI: the manifest as in the tar (pushed byte for byte)
    media_type: str = DOCKER_MANIFEST
    checked: tuple[Part, ...] = ()  # OCI: index and manifest blobs, hashed too


Reader = Callable[[Member], bytes]


def read_layout(index: TarIndex, read: Reader) -> Layout:
    """The image a `docker save` tar holds; `read` returns a small member's bytes (a JSON document)."""
    if "index.json" in index and "oci-layout" in index:
        return _Layout(index, read).oci()
    if "manifest.json" in index:
        return _Layout(index, read).docker()
    raise bad("neither manifest.json nor an OCI layout (index.json, oci-layout) is in the tar")


def kept_reader(index: TarIndex) -> Reader:
    """A reader over the documents a streaming scan kept."""

    def read(member: Member) -> bytes:
        data = index.kept.get(member.name)
        if data is None:
            raise bad(f"{member.name} is not a JSON document of at most {JSON_LIMIT} bytes")
        return data

    return read


class _Layout:
    def __init__(self, index: TarIndex, read: Reader) -> None:
        self.index = index
        self.read = read

    def json(self, name: str) -> tuple[Any, bytes, Member]:
        member = self.index.resolve(name)
        if member.size > JSON_LIMIT:
            raise bad(f"{name} is larger than {JSON_LIMIT} bytes")
        raw = self.read(member)
        try:
            return json.loads(raw), raw, member
        except ValueError as exc:
            raise bad(f"{name} is not JSON: {exc}") from exc

    def docker(self) -> Layout:
        entries, _, _ = self.json("manifest.json")
        if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
            raise bad("manifest.json does not list an image")
        entry = entries[0]  # one image per upload: a multi-image tar pushes its first image
        config_name, layer_names = entry.get("Config"), entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layer_names, list):
            raise bad("manifest.json lacks Config or Layers")
        config, _, config_member = self.json(config_name)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") if isinstance(config, dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layer_names):
            raise bad("the config's rootfs.diff_ids do not match the manifest's layers")
        stem = posixpath.basename(config_name).removesuffix(".json")
        config_digest = f"sha256:{stem}" if _is_hex(stem) else None
        layers = []
        for name, diff_id in zip(layer_names, diff_ids, strict=True):
            if not isinstance(name, str) or not isinstance(diff_id, str) or not _is_digest(diff_id):
                raise bad(f"layer {name!r} or its diff_id {diff_id!r} is malformed")
            layers.append(Part(self.index.resolve(name), DOCKER_LAYER, diff_id))
        return Layout("docker", Part(config_member, DOCKER_CONFIG, config_digest), tuple(layers))

    def oci(self) -> Layout:
        top, _, _ = self.json("index.json")
        manifests = top.get("manifests") if isinstance(top, dict) else None
        if not isinstance(manifests, list) or not manifests:
            raise bad("index.json lists no manifest")
        descriptor, checked = self.pick(manifests), []
        for _ in range(3):
            document, body, member = self.json(blob_name(descriptor))
            checked.append(self.part(descriptor))
            if not isinstance(document, dict):
                raise bad(f"manifest {member.name} is not an object")
            media_type = document.get("mediaType") or descriptor.get("mediaType") or OCI_MANIFEST
            if media_type in INDEXES or "manifests" in document:
                descriptor = self.pick(document.get("manifests") or [])
                continue
            config_d, layer_ds = document.get("config"), document.get("layers")
            if not isinstance(config_d, dict) or not isinstance(layer_ds, list):
                raise bad(f"manifest {member.name} lacks config or layers")
            layers = tuple(self.part(d) for d in layer_ds if isinstance(d, dict))
            return Layout("oci", self.part(config_d), layers, body, str(media_type), tuple(checked))
        raise bad("image indexes are nested too deeply")

    def pick(self, descriptors: list[Any]) -> dict[str, Any]:
        """The first descriptor whose blob is in the tar and that is not an attestation."""
        for descriptor in descriptors:
            if not isinstance(descriptor, dict):
                continue
            if (descriptor.get("platform") or {}).get("os") == "unknown":
                continue
            if blob_name(descriptor) in self.index:
                return descriptor
        raise bad("no manifest named by the index is in the tar")

    def part(self, descriptor: dict[str, Any]) -> Part:
        size = descriptor.get("size")
        if size is not None and not isinstance(size, int):
            raise bad(f"descriptor {descriptor.get('digest')} has a size that is not a number")
        member = self.index.resolve(blob_name(descriptor))
        return Part(member, str(descriptor.get("mediaType", "")), str(descriptor["digest"]), size)


def blob_name(descriptor: dict[str, Any]) -> str:
    digest = str(descriptor.get("digest", ""))
    if not _is_digest(digest):
        raise bad(f"unsupported digest {descriptor.get('digest')!r}")
    return f"blobs/sha256/{digest[7:]}"


def _is_digest(text: str) -> bool:
    return text.startswith("sha256:") and _is_hex(text[7:])


def _is_hex(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
