"""`tingyu sim`: says it is a simulation and spreads machines over its processes."""

from __future__ import annotations

import argparse

import pytest

from tingyu.cli import main, sim


def test_help_says_it_is_a_simulation(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main.main(["sim", "--help"])
    assert "THIS IS A SIMULATION" in capsys.readouterr().out


def test_machines_are_split_evenly_without_overlap() -> None:
    parts = sim.shares(100_001, 4)
    assert [count for _, count in parts] == [25_001, 25_000, 25_000, 25_000]
    assert [offset for offset, _ in parts] == [0, 25_001, 50_001, 75_001]
    assert sim.shares(2, 8) == [(0, 1), (1, 1)]


def test_each_process_gets_the_shared_options() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    sim.register(commands)
    args = parser.parse_args(["sim", "--nodes", "10", "--failure-rate", "0.2", "--start-latency-ms", "50"])
    argv = sim.argv_of(args, offset=5, count=5, index=1)
    assert argv[argv.index("--offset") + 1] == "5"
    assert argv[argv.index("--failure-rate") + 1] == "0.2"
    assert argv[argv.index("--start-latency-ms") + 1] == "50.0"
    assert "--stats-file" not in argv
