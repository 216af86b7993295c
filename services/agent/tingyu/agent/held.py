"""The desired state an agent holds, key by key, with the bucket revision each key was read at.

Nudges name one key and its new revision; a nudge at or below the revision held is stale (late or
duplicated) and costs no read. A read that answers an older revision than the one held (a lagging
replica, a listing that started before a key read) is ignored, so the agent never goes back to an
older revision. A removal read is remembered with its revision until a listing that reflects it,
so a listing cut before it does not bring the key back; and a listing drops the keys it lacks only
when they were read at or before its cut (a key written after the cut, read from its nudge while
the listing was under way, stays). Pure: no I/O, so every rule is a unit test.
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
    removed: dict[str, int] = field(default_factory=dict)  # removals read -> their revision

    @classmethod
    def remembered(cls, node_uuid: str, doc: NodeDesired | None) -> Held:
        """A state from disk: its revisions are unknown (0), so any read replaces it."""
        return cls(node_uuid, dict(doc.containers) if doc else {})

    def doc(self) -> NodeDesired:
        return gather(self.node_uuid, list(self.entries.values()))

    def stale(self, name: str, revision: int) -> bool:
        """Whether `revision` of `name` is no newer than the write or removal held."""
        return revision <= (self.revisions.get(name) or self.removed.get(name, 0))

    def take(self, name: str, value: DesiredContainer | None, revision: int) -> bool:
        """One key as read: its value at `revision`, or None when it is removed (at `revision`)
        or absent (0). False when the read is no newer than what is held."""
        if revision and self.stale(name, revision):
            return False
        if value is None:
            self.entries.pop(name, None)
            self.revisions.pop(name, None)
            if revision:
                self.removed[name] = revision
            return True
        self.entries[name] = value
        self.revisions[name] = revision
        self.removed.pop(name, None)
        return True

    def replace(self, listing: dict[str, tuple[DesiredContainer, int]], cut: int) -> None:
        """A full read that reflects every write up to `cut` (the newest one it saw): a key it
        lacks is gone unless it was read at a revision after the cut; a key held at a newer
        revision than listed stays, and so does a removal read after the cut."""
        for name in set(self.entries) - set(listing):
            if self.revisions.get(name, 0) <= cut:
                self.take(name, None, 0)
        for name, (value, revision) in listing.items():
            self.take(name, value, revision)
        self.removed = {name: revision for name, revision in self.removed.items() if revision > cut}
