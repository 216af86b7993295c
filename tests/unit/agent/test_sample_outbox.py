"""The agent's sample buffer without NATS: bounded, oldest dropped first and counted, kept in order
until a connection takes it."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tingyu.agent.sampling import Outbox
from tingyu.common.models.metering import Sample, SampleBatch


def _metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _batch(tick: int) -> SampleBatch:
    sample = Sample(sample_id=f"n/{tick}/-", node_uuid="n", ts=tick / 1000, interval_s=10)
    return SampleBatch(batch_id=f"n-{tick}", node_uuid="n", samples=[sample])


async def test_a_full_buffer_drops_the_oldest_batch_counts_it_and_keeps_the_rest_unsent() -> None:
    dropped_before = _metric("tingyu_agent_sample_batches_dropped_total")
    outbox = Outbox(3)
    for tick in range(5):
        outbox.add(_batch(tick))
    await outbox.flush(None, timeout=1)  # no connection yet: nothing leaves, nothing is lost
    assert [b.batch_id for b in outbox.batches] == ["n-2", "n-3", "n-4"]
    assert outbox.dropped == 2
    assert _metric("tingyu_agent_sample_batches_dropped_total") - dropped_before == 2
    assert _metric("tingyu_agent_sample_batches_buffered") == 3
