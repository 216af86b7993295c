"""A `/node/list` entry is encoded without the model: byte for byte what `NodeView` would write,
for any string a machine can report (quotes, backslashes, control characters, non-ASCII)."""

from __future__ import annotations

import pytest

from tests.support.factories import facts, node_record
from tingyu.api.schemas.nodes import NodeView, node_entry, node_fields
from tingyu.api.views import heard_entry, machine
from tingyu.common.models.nodes import Disk, Nic, NodeStatus

ODD = [
    "南京",
    'a "quoted" \\ back\\slash',
    "tab\tnew\nline\rcr\bbs\fff",
    "\x00\x01\x1f\x7f",
    "\u2028\u2029 emoji 🚀 é",
    "</script>&<>'",
    "",
]


@pytest.mark.parametrize("text", ODD)
def test_an_entry_is_the_models_json(text: str) -> None:
    node = facts(
        area=text,
        operator=text,
        kernelversion=text,
        osimage=text,
        architecture=text,
        address=text,
        eth=[Nic(Name=text, IP="10.0.0.1", Type="real"), Nic(Name="eth1", IP=text, Type="virt")],
        diskinfo=[Disk(Name=text, Size=2000, Use=17)],
        bandwith=1000,
    )
    for status in NodeStatus:
        for simulated in (False, True):
            record = node_record(node, created=1_700_000_000.5, status=status, simulated=simulated)
            for tz in ("Asia/Shanghai", "UTC"):
                want = NodeView(**node_fields(record, tz)).model_dump_json(exclude_unset=True).encode()
                assert node_entry(record, tz) == want


@pytest.mark.parametrize("text", ODD)
def test_a_heartbeat_heard_later_is_the_entrys_heartbeattime(text: str) -> None:
    """The API answers the later of a machine's stored heartbeat time and the one the nodes
    service last heard: the entry then is the model's JSON with that time, whatever the other
    fields hold (a field's text such as `"heartbeattime":"` cannot be taken for the field)."""
    node = facts(area=text, kernelversion='"heartbeattime":"x', osimage=text)
    record = node_record(node, created=1_700_000_000.5).model_copy(update={"heartbeattime": 1_700_000_100.2})
    for tz in ("Asia/Shanghai", "UTC"):
        held = machine(record, tz)
        later = record.model_copy(update={"heartbeattime": 1_700_000_137.9})
        want = NodeView(**node_fields(later, tz)).model_dump_json(exclude_unset=True).encode()
        assert heard_entry(held, 1_700_000_137.9, tz) == want
        # Heard no later (or within the same second): the stored entry as it is.
        for heard in (0.0, 1_700_000_050.0, 1_700_000_100.9):
            assert heard_entry(held, heard, tz) == node_entry(record, tz)
