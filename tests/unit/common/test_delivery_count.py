"""The delivery count read from a JetStream ack subject alone agrees with nats-py's own parsing,
in both forms of the subject (without and with the domain and account hash)."""

from __future__ import annotations

from typing import Any

import pytest
from nats.aio.msg import Msg

from tingyu.common.bus.consumers import deliveries

ACK_SUBJECTS = [
    "$JS.ACK.TY_SAMPLES.metering-samples.1.17.12.1700000000000000000.3",
    "$JS.ACK.TY_SAMPLES.metering-samples.4.17.40.1700000000000000000.0",
    "$JS.ACK.hub.ACCHASH.TY_SAMPLES.metering-samples.7.9001.9100.1700000000000000000.12.token",
]


def _msg(reply: str) -> Msg:
    client: Any = None
    return Msg(_client=client, subject="ty.samples.n", reply=reply, data=b"{}")


@pytest.mark.parametrize("reply", ACK_SUBJECTS)
def test_the_delivery_count_is_the_one_nats_py_reads(reply: str) -> None:
    msg = _msg(reply)
    assert deliveries(msg) == msg.metadata.num_delivered


def test_a_message_without_an_ack_subject_counts_as_a_first_delivery() -> None:
    assert deliveries(_msg("")) == 1
