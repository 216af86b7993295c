"""Identifiers: job ids, node identities and the names clients may choose."""

from __future__ import annotations

import re
import secrets

# DNS-1123 label, as Kubernetes names deployments: lower-case alphanumerics and '-', 1-63 chars.
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_UUID = re.compile(r"^tingyu-[0-9a-f]{32}$")
_IMAGE_NAME = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


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


def is_deployment_name(name: str) -> bool:
    """True for a DNS-1123 label (what Kubernetes accepts as a deployment name)."""
    return bool(_DNS1123.match(name))


def is_node_uuid(uuid: str) -> bool:
    return bool(_UUID.match(uuid))


def is_image_name(name: str) -> bool:
    """True for a repository name the OCI distribution spec accepts."""
    return len(name) <= 255 and bool(_IMAGE_NAME.match(name))


def is_image_tag(tag: str) -> bool:
    """True for a tag the OCI distribution spec accepts."""
    return bool(_TAG.match(tag))


def has_registry_host(image: str) -> bool:
    """An image whose first path component is a registry host is used as given."""
    first, sep, _ = image.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def split_csv(value: str) -> list[str]:
    """`a, b,,c` -> [a, b, c] (the contract passes lists as comma-separated strings)."""
    return [part.strip() for part in value.split(",") if part.strip()]
