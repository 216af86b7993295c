"""The agent's sample buffer without NATS: bounded, oldest dropped first and counted, kept in order
until a connection takes it."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tingyu.agent.sampling import MAX_BATCH_BYTES, Outbox
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


def _reading(tick: int, containers: int = 2) -> SampleBatch:
    """One reading of machine `n`: its own sample and one per container, as the agent takes them."""
    ids = [f"n/{tick}/-"] + [f"n/{tick}/c{i}" for i in range(containers)]
    samples = [Sample(sample_id=i, node_uuid="n", ts=tick, interval_s=10) for i in ids]
    return SampleBatch(batch_id=f"n-{tick}", node_uuid="n", samples=samples)


def test_readings_go_out_several_to_a_batch_named_by_the_first_each_sample_once() -> None:
    outbox = Outbox(100, readings=3)
    readings = [_reading(tick) for tick in range(7)]
    for reading in readings:
        outbox.add_reading(reading)
    assert [b.batch_id for b in outbox.batches] == ["n-0", "n-3"]  # the 7th waits for two more
    outbox.seal()  # the sampler stops: what was gathered goes out
    assert [b.batch_id for b in outbox.batches] == ["n-0", "n-3", "n-6"]
    assert [len(b.samples) for b in outbox.batches] == [9, 9, 3]
    sent = [s.sample_id for b in outbox.batches for s in b.samples]
    assert sent == [s.sample_id for r in readings for s in r.samples]  # in reading order, once
    outbox.seal()
    assert len(outbox.batches) == 3  # nothing open: no empty batch


def test_a_batch_is_sealed_before_it_would_pass_the_size_bound() -> None:
    big = _reading(0, containers=400)
    per_reading = len(big.to_bytes())
    outbox = Outbox(100, readings=1000)
    for tick in range(MAX_BATCH_BYTES // per_reading + 3):
        outbox.add_reading(_reading(tick, containers=400))
    outbox.seal()
    assert len(outbox.batches) == 2
    assert all(len(b.to_bytes()) <= MAX_BATCH_BYTES for b in outbox.batches)
