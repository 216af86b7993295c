"""What every benchmark shares: a platform on free ports in a temp dir, percentiles, a report line."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tingyu.cli.launcher import Platform, PlatformConfig, free_port


@contextlib.contextmanager
def platform(services: tuple[str, ...], **env: str) -> Iterator[Platform]:
    """The platform with only `services`, logging to a file in its temp dir."""
    with tempfile.TemporaryDirectory(prefix="tingyu-bench-") as folder:
        config = PlatformConfig(
            state_dir=Path(folder),
            nats_port=free_port(),
            registry_port=free_port(),
            api_port=free_port(),
            services=services,
            extra_env={"TINGYU_LOG_LEVEL": "WARNING", **env},
            colour=False,
            log_file=Path(folder) / "platform.log",
        )
        running = Platform(config)
        try:
            running.start_all()
            yield running
        finally:
            running.stop()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def report(title: str, ours: float, baseline: float, unit: str, baseline_name: str) -> str:
    """One result line: ours, the baseline, and ours/baseline."""
    ratio = ours / baseline if baseline else float("nan")
    line = f"{title}: {ours:,.1f} {unit} vs {baseline_name} {baseline:,.1f} {unit} -> ratio {ratio:.3f}"
    print(line, flush=True)
    return line


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")
