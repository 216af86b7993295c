"""The machine's identity: made once, kept in `<state_dir>/identity.json`, the same after every restart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tingyu.agent.statefile import read_json, write_json
from tingyu.common.names import is_node_uuid, new_node_identity, nodename_of


@dataclass(frozen=True)
class Identity:
    """A machine's uuid (`tingyu-<32 hex>`) and nodename (`<32 hex>`)."""

    uuid: str
    nodename: str


def load_or_create(state_dir: Path) -> Identity:
    """The stored identity, or a fresh one written atomically before it is used.

    A file that exists but does not hold a valid uuid is refused rather than replaced: a new
    uuid would make this machine a stranger to the platform and orphan its containers.
    """
    path = state_dir / "identity.json"
    stored = read_json(path)
    if stored is None:
        uuid, nodename = new_node_identity()
        write_json(path, {"uuid": uuid, "nodename": nodename})
        return Identity(uuid, nodename)
    uuid = str(stored.get("uuid", "")) if isinstance(stored, dict) else ""
    if not is_node_uuid(uuid):
        raise ValueError(f"{path} holds no valid machine uuid; fix or remove it")
    return Identity(uuid=uuid, nodename=nodename_of(uuid))
