"""The desired state an agent holds, key by key, with the bucket revision each key was read at.

Nudges name one key and its new revision; a nudge at or below the revision held is stale (late or
duplicated) and costs no read. A read that answers an older revision than the one held (a lagging
replica, a listing that started before a key read) is ignored, so the agent never goes back to an
older revision. Pure: no I/O, so every rule is a unit test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tingyu.common.desired import gather
from tingyu.common.models.containers import DesiredContainer, NodeDesired


@dataclass
class Held:
    """One machine's desired deployments and the revision of each."""

    node_uuid: str
    entries: dict[str, DesiredContainer] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)

    @classmethod
    def remembered(cls, node_uuid: str, doc: NodeDesired | None) -> Held:
        """A state from disk: its revisions are unknown (0), so any read replaces it."""
        return cls(node_uuid, dict(doc.containers) if doc else {})

    def doc(self) -> NodeDesired:
        return gather(self.node_uuid, list(self.entries.values()))

    def stale(self, name: str, revision: int) -> bool:
        """Whether `revision` of `name` is no newer than the one held."""
        return revision <= self.revisions.get(name, 0)

    def take(self, name: str, value: DesiredContainer | None, revision: int) -> bool:
        """One key as read (None, 0: absent or deleted). False when the read is older than what is held."""
        if value is None:
            self.entries.pop(name, None)
            self.revisions.pop(name, None)
            return True
        if self.stale(name, revision) and name in self.entries:
            return False
        self.entries[name] = value
        self.revisions[name] = revision
        return True

    def replace(self, listing: dict[str, tuple[DesiredContainer, int]]) -> None:
        """A full read: keys it lacks are gone; a key held at a newer revision than listed stays."""
        for name in set(self.entries) - set(listing):
            self.take(name, None, 0)
        for name, (value, revision) in listing.items():
            self.take(name, value, revision)
