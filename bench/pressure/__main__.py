"""Memory under hostile load: `python -m bench.pressure [--slow 50] [--uploads 10] [--mb 32]`.

Peak RSS of the api and imager processes while `--slow` clients send request bodies a few bytes a
second (each stays under the body idle timeout, so the API must hold them) and `--uploads` image
uploads run at once through to the registry, against the same processes' peak RSS over the same
`--idle-s` seconds with no load at all (the baseline, measured first in the same run, after one
upload has warmed both processes up).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

from bench.harness import bearer, report
from bench.images.__main__ import PeakRss, build, save, upload
from tingyu.cli.launcher import Platform, PlatformConfig, free_port

SLOW_BODY_BYTES = 200_000  # what each slow client says it will send
SLOW_PIECE = b" " * 64  # JSON whitespace, sent once a second


async def slow_client(port: int, stop: asyncio.Event) -> bool:
    """A create request whose body trickles in at 64 bytes a second until `stop`; False if the API
    closed it first."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            (
                "POST /tingyu/container/create HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                f"Content-Length: {SLOW_BODY_BYTES}\r\n\r\n["
            ).encode()
        )
        while not stop.is_set():
            writer.write(SLOW_PIECE)
            await writer.drain()
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                continue
    except OSError:
        return False
    finally:
        writer.close()
    return True


async def under_load(
    api: str, auth: dict[str, str], port: int, tar: Path, *, slow: int, uploads: int, tag: str
) -> tuple[float, int]:
    """Run the slow clients and the uploads: seconds until every upload's job succeeded, and how many
    slow clients the API held open all along."""
    stop = asyncio.Event()
    clients = [asyncio.create_task(slow_client(port, stop)) for _ in range(slow)]
    started = time.monotonic()
    try:
        await asyncio.gather(
            *(
                asyncio.to_thread(upload, api, auth, tar, f"bench-pressure-{tag}", f"v{n}")
                for n in range(uploads)
            )
        )
    finally:
        stop.set()
        held = sum(await asyncio.gather(*clients))
    return time.monotonic() - started, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slow", type=int, default=50, help="clients sending their bodies slowly")
    parser.add_argument("--uploads", type=int, default=10, help="image uploads at the same time")
    parser.add_argument("--mb", type=int, default=32, help="payload of the uploaded image")
    parser.add_argument("--idle-s", type=float, default=10.0, help="length of the idle baseline")
    args = parser.parse_args()
    tag = secrets.token_hex(3)
    with tempfile.TemporaryDirectory(prefix="tingyu-bench-") as folder_name:
        folder = Path(folder_name)
        config = PlatformConfig(
            state_dir=folder / "state",
            nats_port=free_port(),
            registry_port=free_port(),
            api_port=free_port(),
            services=("imager", "api"),
            extra_env={"TINGYU_LOG_LEVEL": "WARNING", "TINGYU_API_MAX_UPLOADS": str(args.uploads + 2)},
            colour=False,
            log_file=folder / "platform.log",
        )
        platform = Platform(config)
        created: list[str] = []
        try:
            platform.start_all()
            base, image = f"tybench/pbase:{tag}", f"tybench/pressure:{tag}"
            build(folder, base, None, 0)
            build(folder, image, base, args.mb)
            created += [base, image]
            size = save(image, folder / "image.tar")
            pids = {name: platform.procs[name].popen.pid for name in ("api", "imager")}

            # A first upload warms both processes (imports, connections, the object store).
            upload(config.api_url, bearer(config), folder / "image.tar", f"bench-warm-{tag}", "v1")
            with PeakRss(pids) as idle:
                time.sleep(args.idle_s)  # the baseline: the same processes with nothing to do
            with PeakRss(pids) as loaded:
                seconds, held = asyncio.run(
                    under_load(
                        config.api_url,
                        bearer(config),
                        config.api_port,
                        folder / "image.tar",
                        slow=args.slow,
                        uploads=args.uploads,
                        tag=tag,
                    )
                )
            print(
                f"{args.slow} slow clients ({held} held open throughout), {args.uploads} uploads of "
                f"{size / 1e6:.1f} MB at once: all pushed in {seconds:.1f}s",
                flush=True,
            )
            for name in pids:
                report(
                    f"{name} peak RSS, {args.slow} slow clients + {args.uploads} uploads",
                    loaded.peak[name] / 1e6,
                    idle.peak[name] / 1e6,
                    "MB",
                    "idle",
                )
        finally:
            for reference in created:
                subprocess.run(["docker", "rmi", "-f", reference], check=False, capture_output=True)
            platform.stop()


if __name__ == "__main__":
    main()
