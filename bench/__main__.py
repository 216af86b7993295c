"""`make bench`: every benchmark at a size this machine runs in minutes; each prints its ratios.

Run one alone for other sizes: `python -m bench.core.accept --help`, `bench.core.latency`,
`bench.images`, `bench.pressure`, `bench.metering`, `bench.fleet`.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

RUNS = [
    ["bench.core.accept", "--requests", "2000"],
    ["bench.core.accept", "--requests", "200", "--items", "20"],
    ["bench.core.latency", "--containers", "30"],
    ["bench.images", "--mb", "64", "--big-mb", "256"],
    ["bench.pressure", "--slow", "50", "--uploads", "10", "--mb", "32"],
    [
        "bench.metering",
        "--machines",
        "200",
        "--days",
        "7",
        "--ingest-machines",
        "50",
        "--ingest-ticks",
        "100",
    ],
    ["bench.fleet", "--nodes", "1000"],
]


def main() -> int:
    failed = 0
    for module, *args in RUNS:
        if importlib.util.find_spec(module) is None:
            continue
        print(f"$ python -m {module} {' '.join(args)}", flush=True)
        failed += subprocess.run([sys.executable, "-m", module, *args], check=False).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
