"""The desired state an agent holds never goes back to an older revision of a key."""

from __future__ import annotations

from tests.support.factories import spec
from tingyu.agent.held import Held
from tingyu.common.models.containers import DesiredContainer, DesiredState, NodeDesired

NODE = "tingyu-" + "1" * 32


def entry(name: str, version: str, revision: int = 1) -> DesiredContainer:
    return DesiredContainer(
        name=name, spec=spec(version=version), revision=revision, job_id="j" * 32, created_at=0.0
    )


def test_a_nudge_at_or_below_the_held_revision_is_stale() -> None:
    held = Held(NODE)
    assert not held.stale("web", 1)  # nothing held: any revision is news
    held.take("web", entry("web", "2"), 7)
    assert held.stale("web", 7)  # a duplicate
    assert held.stale("web", 5)  # a late one
    assert not held.stale("web", 8)
    assert not held.stale("db", 1)


def test_a_read_older_than_the_held_revision_is_ignored() -> None:
    held = Held(NODE)
    assert held.take("web", entry("web", "2", revision=2), 7)
    assert not held.take("web", entry("web", "1", revision=1), 5)  # a lagging replica's answer
    assert held.doc().containers["web"].spec.imageversion == "2"
    assert held.revisions["web"] == 7
    assert held.take("web", entry("web", "3", revision=3), 9)
    assert held.doc().containers["web"].spec.imageversion == "3"


def test_a_full_listing_drops_deleted_keys_and_keeps_newer_ones() -> None:
    held = Held(NODE)
    held.take("web", entry("web", "3"), 9)
    held.take("gone", entry("gone", "1"), 4)
    held.replace({"web": (entry("web", "2"), 7), "new": (entry("new", "1"), 8)}, cut=8)
    doc = held.doc()
    assert sorted(doc.containers) == ["new", "web"]
    assert doc.containers["web"].spec.imageversion == "3"  # the listing was older than the key read


def test_a_deleted_key_goes_and_a_state_from_disk_is_replaced_by_any_read() -> None:
    remembered = NodeDesired(node_uuid=NODE, containers={"web": entry("web", "1")})
    held = Held.remembered(NODE, remembered)
    assert not held.stale("web", 1)  # revisions of a state on disk are unknown
    assert held.take("web", entry("web", "2").model_copy(update={"state": DesiredState.STOPPED}), 3)
    assert held.doc().containers["web"].state == DesiredState.STOPPED
    assert held.take("web", None, 0)
    assert held.doc().containers == {}


def test_a_key_read_after_the_listings_cut_stays_though_the_listing_lacks_it() -> None:
    """A listing under way while a new key is written and read from its nudge: the listing, cut
    before that write, does not have it, and the key stays; a listing cut after it drops it."""
    held = Held(NODE)
    held.take("web", entry("web", "1"), 7)
    held.take("late", entry("late", "1"), 12)  # written at 12, read from its nudge
    held.replace({"web": (entry("web", "1"), 7)}, cut=10)
    assert sorted(held.doc().containers) == ["late", "web"]
    held.replace({"web": (entry("web", "1"), 7)}, cut=12)  # a listing that saw 12 and not the key
    assert sorted(held.doc().containers) == ["web"]


def test_a_removal_read_after_the_listings_cut_is_not_undone_by_it() -> None:
    """A key removed at 11 and read so (its nudge): a listing cut at 10 still has the key and
    does not bring it back; the removal is remembered until a listing's cut covers it."""
    held = Held(NODE)
    held.take("web", entry("web", "1"), 5)
    assert held.take("web", None, 11)
    assert held.stale("web", 11)  # the removal's nudge, late or twice
    held.replace({"web": (entry("web", "1"), 5)}, cut=10)
    assert held.doc().containers == {}
    assert held.removed == {"web": 11}
    held.replace({}, cut=11)
    assert held.removed == {}
    assert held.take("web", entry("web", "2"), 14)  # written again later
    assert held.doc().containers["web"].spec.imageversion == "2"
