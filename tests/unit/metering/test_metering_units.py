"""Pure parts of metering: bucket ranges, the billing index, attribution of traffic, wire checks."""

from __future__ import annotations

import json

import pytest

from tingyu.agent.sampling import ContainerReading, Reading, split_image_ref, to_samples
from tingyu.api.config import ApiSettings
from tingyu.api.params import split_image_version as _image_version
from tingyu.api.params import time_range as _range
from tingyu.common.errors import InvalidParameter, InvalidTimeRange, MissingParameter
from tingyu.common.models.metering import RawSampleBatch, Sample, bucket_range, p95_index
from tingyu.metering.samples import Good, Window, accepted, distinct, fast_accepted
from tingyu.metering.store import split_statements


def test_bucket_range_touches_both_ends() -> None:
    assert bucket_range(1000, 1000) == (900, 900, 1)
    assert bucket_range(900, 1200) == (900, 1200, 2)
    assert bucket_range(901, 1499) == (900, 1200, 2)


@pytest.mark.parametrize(("count", "index"), [(1, 0), (19, 18), (20, 18), (21, 19), (100, 94), (8640, 8207)])
def test_p95_drops_the_top_five_percent(count: int, index: int) -> None:
    assert p95_index(count) == index


def _container(name: str, host: bool, cpu_s: float, tx: int = 0, rx: int = 0) -> ContainerReading:
    return ContainerReading(name, "127.0.0.1:5000/pcdn:v1", host, int(cpu_s * 1e9), 100.0, tx, rx)


def test_host_network_containers_split_what_own_namespaces_did_not_move() -> None:
    before = Reading(
        at=100.0,
        tx_bytes=1000,
        rx_bytes=500,
        containers={
            "a": _container("a", True, 1),
            "b": _container("b", True, 2),
            "c": _container("c", False, 0, tx=10, rx=10),
        },
    )
    now = Reading(
        at=110.0,
        tx_bytes=3000,
        rx_bytes=1500,
        containers={
            "a": _container("a", True, 6),
            "b": _container("b", True, 2),
            "c": _container("c", False, 0, tx=210, rx=110),
            "new": _container("new", True, 9),
        },
    )
    samples = {s.deploymentname: s for s in to_samples("u1", before, now, {"a": ("pcdn", "v1")})}
    assert samples[""].tx_bytes == 2000
    assert samples[""].rx_bytes == 1000
    assert samples["c"].tx_bytes == 200
    assert samples["a"].tx_bytes == samples["b"].tx_bytes == (2000 - 200) // 2
    assert samples["a"].rx_bytes == (1000 - 100) // 2
    assert samples["a"].cpu_cores == pytest.approx(0.5)
    assert (samples["a"].image, samples["a"].version) == ("pcdn", "v1")
    assert (samples["b"].image, samples["b"].version) == ("127.0.0.1:5000/pcdn", "v1")
    assert "new" not in samples  # first seen now: its interval starts at the next reading
    assert len({s.sample_id for s in samples.values()}) == len(samples)


def test_a_counter_that_went_back_counts_from_zero() -> None:
    before = Reading(at=0.0, tx_bytes=5000, rx_bytes=5000)
    now = Reading(at=10.0, tx_bytes=300, rx_bytes=6000)
    (node,) = to_samples("u1", before, now, {})
    assert (node.tx_bytes, node.rx_bytes) == (300, 1000)


def test_image_references_split_at_the_tag() -> None:
    assert split_image_ref("127.0.0.1:5000/a/b:1.2") == ("127.0.0.1:5000/a/b", "1.2")
    assert split_image_ref("127.0.0.1:5000/a/b") == ("127.0.0.1:5000/a/b", "latest")


def test_image_version_parameter() -> None:
    assert _image_version("pcdn:v6.1333") == ("pcdn", "v6.1333")
    assert _image_version("127.0.0.1:5000/x:1") == ("127.0.0.1:5000/x", "1")
    for bad in ("pcdn", "pcdn:", ":v1", "127.0.0.1:5000/x"):
        with pytest.raises(InvalidParameter):
            _image_version(bad)


def test_time_range_checks() -> None:
    settings = ApiSettings(max_range_days=31)
    start, end = _range("2021-05-08 11:24:22", "2021-05-11 11:24:22", settings)
    assert end - start == 3 * 86400
    with pytest.raises(MissingParameter):
        _range("", "2021-05-11 11:24:22", settings)
    refusals = {
        ("2021-05-08", "2021-05-11 11:24:22"): "yyyy-MM-dd HH:mm:ss",
        ("2021-05-12 00:00:00", "2021-05-11 11:24:22"): "after",
        ("2021-01-01 00:00:00", "2021-05-11 11:24:22"): "31 days",
    }
    for (start_date, end_date), reason in refusals.items():
        with pytest.raises(InvalidTimeRange) as refused:
            _range(start_date, end_date, settings)
        assert refused.value.msg == "时间范围错误"
        assert reason in (refused.value.detail or "")


def test_schema_statements_split_without_comments() -> None:
    assert split_statements("-- a; comment\nCREATE X;\n\n  -- b\nCREATE Y\n  (a);\n") == [
        "CREATE X",
        "CREATE Y\n  (a)",
    ]


NOW = 1_800_000_000.0
GOOD = {"sample_id": "s", "node_uuid": "n1", "ts": NOW - 60, "interval_s": 30.0, "tx_bytes": 5}
BAD: dict[str, object] = {
    "nan time": {**GOOD, "ts": float("nan")},
    "infinite cpu": {**GOOD, "cpu_cores": float("inf")},
    "negative counter": {**GOOD, "rx_bytes": -1},
    "huge counter": {**GOOD, "tx_bytes": 2**64},
    "far future": {**GOOD, "ts": NOW + 2 * 86400},
    "older than the raw table": {**GOOD, "ts": NOW - 40 * 86400},
    "zero interval": {**GOOD, "interval_s": 0},
    "long interval": {**GOOD, "interval_s": 3601},
    "too many cores": {**GOOD, "cpu_cores": 4097},
    "negative memory": {**GOOD, "memory_mib": -1},
    "long name": {**GOOD, "image": "x" * 257},
    "another machine": {**GOOD, "node_uuid": "n2"},
    "no id": {**GOOD, "sample_id": ""},
    "not an object": "x",
    "time is text": {**GOOD, "ts": "soon"},
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_the_fast_path_takes_a_batch_only_when_every_sample_is_good(name: str) -> None:
    window = Window(NOW, 35 * 86400, 86400)

    def fast(samples: list[object]) -> list[str] | None:
        data = json.dumps({"batch_id": "b1", "node_uuid": "n1", "samples": samples}).encode()
        good = fast_accepted(data, window)
        return None if good is None else good.ids

    good = [{**GOOD, "sample_id": "a"}, {**GOOD, "sample_id": "b", "cpu_cores": 4096, "image": "x" * 256}]
    assert fast(good) == ["a", "b"]
    assert fast([*good, BAD[name]]) is None  # then each sample on its own: `accepted`
    raw = RawSampleBatch(batch_id="b1", node_uuid="n1", samples=[*good, BAD[name]])
    kept, dropped = accepted(raw, window)
    assert ([s.sample_id for s in kept], sum(dropped.values())) == (["a", "b"], 1)


# Good samples the fast path leaves to the per-sample one, because their JSON is not what agents
# send and the store might read it otherwise than the checks did; there they are kept.
LOOSE: dict[str, object] = {
    "counter written as a float": {**GOOD, "tx_bytes": 5.0},
    "time written as text": {**GOOD, "ts": str(NOW - 60)},
    "interval written as text": {**GOOD, "interval_s": "30"},
}


@pytest.mark.parametrize("name", sorted(LOOSE))
def test_loose_json_takes_the_per_sample_path_and_is_kept(name: str) -> None:
    window = Window(NOW, 35 * 86400, 86400)
    samples = [{**GOOD, "sample_id": "a"}, LOOSE[name]]
    data = json.dumps({"batch_id": "b1", "node_uuid": "n1", "samples": samples}).encode()
    assert fast_accepted(data, window) is None
    kept, dropped = accepted(RawSampleBatch.from_bytes(data), window)
    assert ([s.sample_id for s in kept], dict(dropped)) == (["a", "s"], {})


def test_each_bad_sample_drops_alone() -> None:
    now = NOW
    good = GOOD
    bad = {
        "nan time": {**good, "ts": float("nan")},
        "infinite cpu": {**good, "cpu_cores": float("inf")},
        "negative counter": {**good, "rx_bytes": -1},
        "huge counter": {**good, "tx_bytes": 2**64},
        "far future": {**good, "ts": now + 2 * 86400},
        "older than the raw table": {**good, "ts": now - 40 * 86400},
        "zero interval": {**good, "interval_s": 0},
        "another machine": {**good, "node_uuid": "n2"},
        "no id": {**good, "sample_id": ""},
        "not an object": "x",
        "time is text": {**good, "ts": "soon"},
    }
    samples = [{**good, "sample_id": "a"}, *bad.values(), {**good, "sample_id": "b"}]
    batch = RawSampleBatch(batch_id="b1", node_uuid="n1", samples=samples)
    kept, dropped = accepted(batch, Window(now, 35 * 86400, 86400))
    assert [s.sample_id for s in kept] == ["a", "b"]
    assert sum(dropped.values()) == len(bad), dropped
    assert dropped["not a finite number"] == 2


def test_a_nan_in_json_is_dropped_not_fatal() -> None:
    sample = b'{"sample_id":"x","node_uuid":"n","ts":NaN,"interval_s":1}'
    data = b'{"batch_id":"b","node_uuid":"n","samples":[' + sample + b"]}"
    kept, dropped = accepted(RawSampleBatch.from_bytes(data), Window(1e9, 1e9, 1e9))
    assert (kept, dict(dropped)) == ([], {"not a finite number": 1})


def _good(batch_id: str, *ids: str) -> Good:
    samples = [Sample(sample_id=i, node_uuid="n1", ts=NOW - 60, interval_s=30.0) for i in ids]
    return Good.of(batch_id, "n1", samples)


def test_distinct_cuts_repeated_ids_and_leaves_other_messages_as_they_came() -> None:
    untouched, stored_before, twice = _good("b1", "a", "b"), _good("b2", "c", "d"), _good("b3", "e", "e")
    again = _good("b4", "a", "f")  # "a" is in this insert already, in b1
    out = distinct([untouched, stored_before, twice, again], {"c"})
    assert [good.ids for good in out] == [["a", "b"], ["d"], ["e"], ["f"]]
    assert out[0] is untouched  # its bytes are inserted as they came
    assert [s.sample_id for s in out[3].samples()] == ["f"]  # the line itself holds only the rest
    assert distinct([untouched], set()) == [untouched]
    assert distinct([stored_before], {"c", "d"}) == []  # nothing left to insert


def test_the_fast_path_keeps_the_agents_bytes_on_one_line() -> None:
    window = Window(NOW, 35 * 86400, 86400)
    samples = [{**GOOD, "sample_id": "a", "future_field": 1}, {**GOOD, "sample_id": "b"}]
    data = json.dumps({"batch_id": "b1", "node_uuid": "n1", "samples": samples}, indent=2).encode()
    good = fast_accepted(data, window)
    assert good is not None
    assert (good.node_uuid, good.ids, good.times) == ("n1", ["a", "b"], [NOW - 60, NOW - 60])
    assert b"\n" not in good.line
    assert json.loads(good.line) == json.loads(data)
