"""What every benchmark shares: a platform on free ports in a temp dir, percentiles, a report line."""

from __future__ import annotations

import asyncio
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
            nats_monitor_port=free_port(),  # /jsz and /stacksz, to look inside the server during a run
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


def bearer(config: PlatformConfig) -> dict[str, str]:
    """The header that authenticates a benchmark's calls: the admin token of the platform it started
    (`TINGYU_API_ADMIN_TOKEN` when set, else the one `tingyu up`'s code made under its state dir)."""
    return {"Authorization": f"Bearer {config.admin_token()}"}


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


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client: the load generator must cost far less than the server
    it measures (httpx spends more CPU per request than the API does)."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{self.extra}\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        chunked = False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding":
                chunked = "chunked" in value.lower()
        status = int(status_line.split()[1])
        if not chunked:
            return status, await self.reader.readexactly(length)
        pieces = []  # a streamed answer (`/node/list`)
        while size := int((await self.reader.readline()).split(b";")[0], 16):
            pieces.append(await self.reader.readexactly(size))
            await self.reader.readline()
        await self.reader.readline()
        return status, b"".join(pieces)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
