"""A pre-encoded simulated heartbeat is the model's own encoding with the time joined in."""

from __future__ import annotations

from tingyu.common.models.nodes import Heartbeat
from tingyu.sim.fleet import encoded_beat


def test_an_encoded_beat_is_the_models_encoding() -> None:
    head, tail = encoded_beat("tingyu-" + "a" * 32, "digest")
    for sent_at in (1764236400.123456, 0.5, 1e-05):
        joined = head + repr(sent_at).encode() + tail
        model = Heartbeat(uuid="tingyu-" + "a" * 32, facts_digest="digest", sent_at=sent_at, simulated=True)
        assert Heartbeat.from_bytes(joined) == model
        if sent_at > 1:  # a clock's time: byte for byte (tiny floats are spelled differently)
            assert joined == model.to_bytes()
