"""The simulator reports its own garbage collections, and the fleet benchmark waits for it to be on
time before it measures."""

from __future__ import annotations

import gc
import json
from pathlib import Path

from bench.fleet import probes

from tingyu.sim.fleet import CollectionPauses


def test_collections_are_timed_while_watched_and_no_longer_after() -> None:
    with CollectionPauses() as pauses:
        garbage = [[index] for index in range(200_000)]  # a heap worth walking
        gc.collect()
        took = pauses.take()
        assert took > 0
        assert pauses.take() == 0.0  # taken: the next period starts from nothing
        del garbage
    gc.collect()
    assert pauses.take() == 0.0
    assert pauses._on not in gc.callbacks


def write(path: Path, lag: list[list[float]]) -> None:
    path.write_text(json.dumps({"lag": lag}))


def test_the_simulator_is_on_time_once_every_process_reported_slots_on_time(tmp_path: Path) -> None:
    write(tmp_path / "sim-0.json", [[10.0, 9.0, 0.1, 2.5], [15.0, 0.2, 0.0, 0.0]])
    write(tmp_path / "sim-1.json", [[11.0, 0.1, 0.0, 0.0], [16.0, 4.0, 0.3, 0.0]])
    assert not probes.sim_on_time(tmp_path, 12.0, 1.0)  # sim-1 is behind in its latest report
    assert probes.sim_lag(tmp_path, 12.0) == (4.0, 0.3, 0.0)
    assert probes.sim_lag(tmp_path, 0.0) == (9.0, 0.3, 2.5)

    write(tmp_path / "sim-1.json", [[11.0, 0.1, 0.0, 0.0], [16.0, 4.0, 0.3, 0.0], [21.0, 0.5, 0.0, 0.1]])
    assert probes.sim_on_time(tmp_path, 12.0, 1.0)
    assert not probes.sim_on_time(tmp_path, 17.0, 1.0)  # sim-0 has not reported since
    assert not probes.sim_on_time(tmp_path / "none", 0.0, 1.0)  # no simulator at all
