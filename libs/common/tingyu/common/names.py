"""Identifiers: job ids, node identities and the names clients may choose."""

from __future__ import annotations

import re
import secrets

# Every pattern is used with `fullmatch`: `$` would admit a trailing newline, and an identifier
# becomes a NATS subject token or a key, where a newline or a dot is a different subject.
_JOB_ID = re.compile(r"[0-9a-f]{32}")
# DNS-1123 label, as Kubernetes names deployments: lower-case alphanumerics and '-', 1-63 chars.
_DNS1123 = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_UUID = re.compile(r"tingyu-[0-9a-f]{32}")
# The contract's nodenames are lower-case hex (32 or 45 digits); any short lower-case alphanumeric passes.
_NODENAME = re.compile(r"[0-9a-z]{1,63}")
_IMAGE_NAME = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# A registry host as it appears in a reference: a DNS name or IPv4 address, an optional port.
_REGISTRY_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?")
MAX_IMAGE_NAME = 255
MAX_REFERENCE = 512


def new_job_id() -> str:
    """A job id: 32 hex digits, also used as the command's JetStream message id."""
    return secrets.token_hex(16)


def new_node_identity() -> tuple[str, str]:
    """A fresh (uuid, nodename) pair: `tingyu-<32 hex>` and `<32 hex>`."""
    hex32 = secrets.token_hex(16)
    return f"tingyu-{hex32}", hex32


def nodename_of(uuid: str) -> str:
    """The nodename belonging to a machine uuid."""
    return uuid.removeprefix("tingyu-")


def is_job_id(job_id: str) -> bool:
    """True for a job id as `new_job_id` makes them (32 lower-case hex digits)."""
    return bool(_JOB_ID.fullmatch(job_id))


def is_deployment_name(name: str) -> bool:
    """True for a DNS-1123 label (what Kubernetes accepts as a deployment name)."""
    return bool(_DNS1123.fullmatch(name))


def is_node_uuid(uuid: str) -> bool:
    """True for a machine uuid: `tingyu-<32 hex>`."""
    return bool(_UUID.fullmatch(uuid))


def is_nodename(name: str) -> bool:
    """True for a nodename: up to 63 lower-case letters and digits (ours are the uuid's 32 hex)."""
    return bool(_NODENAME.fullmatch(name))


def is_image_name(name: str) -> bool:
    """True for a repository name the OCI distribution spec accepts."""
    return len(name) <= MAX_IMAGE_NAME and bool(_IMAGE_NAME.fullmatch(name))


def is_image_tag(tag: str) -> bool:
    """True for a tag the OCI distribution spec accepts."""
    return bool(_TAG.fullmatch(tag))


def has_registry_host(image: str) -> bool:
    """An image whose first path component is a registry host is used as given."""
    first, sep, _ = image.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def is_full_image(image: str) -> bool:
    """True for `<registry host>/<repository>` (no tag: the version travels apart)."""
    host, _, path = image.partition("/")
    return (
        len(image) <= MAX_REFERENCE
        and has_registry_host(image)
        and bool(_REGISTRY_HOST.fullmatch(host))
        and is_image_name(path)
    )


def registry_of(image_ref: str) -> str:
    """The registry host a reference pulls from, lower-cased; `docker.io` when it names none."""
    return image_ref.partition("/")[0].lower() if has_registry_host(image_ref) else "docker.io"


def split_csv(value: str) -> list[str]:
    """`a, b,,c` -> [a, b, c] (the contract passes lists as comma-separated strings)."""
    return [part.strip() for part in value.split(",") if part.strip()]
