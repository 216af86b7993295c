"""The nodes view keeps its listing order as machines come, go, change their creation time or
write a value that does not parse: every window of it is the window of the fleet sorted afresh."""

from __future__ import annotations

import random
from collections import OrderedDict

from tests.support.factories import facts, node_record
from tingyu.api.views import NodesView, machine
from tingyu.common import subjects
from tingyu.common.bus.stores import Change, Store
from tingyu.common.models.nodes import NodeRecord

UUIDS = [f"tingyu-{index:032x}" for index in range(60)]


def _record(uuid: str, created: float, beat: float) -> NodeRecord:
    node = facts().model_copy(update={"uuid": uuid, "nodename": uuid.removeprefix("tingyu-")})
    record = node_record(node, created=created)
    return record.model_copy(update={"heartbeattime": beat})


def test_every_window_is_the_fleet_sorted_afresh() -> None:
    view = NodesView(Store(None, subjects.NODES), "UTC")  # type: ignore[arg-type]  # no bus: parse only
    rng = random.Random(7)
    loaded = {uuid: _record(uuid, rng.choice([1.0, 2.0, 3.0]), 0.0) for uuid in UUIDS[:20]}
    fresh = {uuid: machine(record, "UTC", uuid) for uuid, record in loaded.items()}
    view._swap(OrderedDict(), fresh, seq=20)

    for seq in range(21, 600):
        uuid = rng.choice(UUIDS)
        roll = rng.random()
        if roll < 0.2:
            data = b""  # deleted
        elif roll < 0.3:
            data = b"{not json"
        else:  # a new or a later creation time (ties included), or a heartbeat alone
            created = rng.choice([1.0, 2.0, 3.0, 4.0]) if roll < 0.6 else 2.0
            data = _record(uuid, created, float(seq)).to_bytes()
        view.apply(Change(key=uuid, value=None, seq=seq, data=data))

        held = view.stored
        fleet = sorted(held, key=lambda key: (held[key][0], key))
        assert [m[1] for m in view.machines()] == fleet
        for window in (slice(0, 7), slice(7, 14), slice(len(fleet) - 3, len(fleet) + 5)):
            assert [m[1] for m in view.machines(window)] == fleet[window]
