"""The fleet benchmark's reading of a service's histogram between two scrapes."""

from __future__ import annotations

import math

from bench.fleet import probes


def test_a_histogram_window_counts_only_what_came_between_the_scrapes() -> None:
    before = {"0.5": 4.0, "1.0": 4.0, "5.0": 5.0, "+Inf": 5.0, "_count": 5.0, "_sum": 9.0}
    # 100 more: 40 under 0.5 s, 58 more under 5 s, 2 past every bound
    after = {"0.5": 44.0, "1.0": 60.0, "5.0": 103.0, "+Inf": 105.0, "_count": 105.0, "_sum": 309.0}
    window = probes.histogram_window(before, after)
    assert window["count"] == 100
    assert window["mean"] == 3.0
    assert window["p50_under"] == 1.0  # 56 of 100 under 1 s, 40 under 0.5 s
    assert math.isinf(window["p99_under"])  # 98 under 5 s


def test_a_histogram_window_with_nothing_new_says_so() -> None:
    same = {"1.0": 2.0, "+Inf": 2.0, "_count": 2.0, "_sum": 1.0}
    window = probes.histogram_window(same, same)
    assert window["count"] == 0
    assert math.isnan(window["mean"])
    assert probes.histogram_window({}, {})["count"] == 0
