"""Image upload benchmark: `python -m bench.images [--mb 256] [--big-mb 1024]`.

Measured in one run, against one local registry:
1. upload-to-pushed MB/s of a `docker save` tar through the API and imager, next to
   `docker load` + `docker push` of the same tar (the baseline);
2. bytes the imager sends for a second version that shares its base layers;
3. peak RSS of the api and imager processes while a large tar is uploaded.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.harness import bearer
from tingyu.cli.launcher import Platform, PlatformConfig, free_port


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def build(folder: Path, reference: str, base: str | None, payload_mb: int) -> None:
    """An image: busybox (`docker import`) or `base` plus one layer of `payload_mb` random MB."""
    context = folder / secrets.token_hex(4)
    context.mkdir()
    if base is None:
        root = context / "root" / "bin"
        root.mkdir(parents=True)
        (root / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
        (root / "busybox").chmod(0o755)
        (root / "sh").symlink_to("busybox")
        tar = subprocess.run(["tar", "-C", str(context / "root"), "-c", "."], check=True, capture_output=True)
        subprocess.run(
            ["docker", "import", "-", reference], input=tar.stdout, check=True, capture_output=True
        )
        base = reference
        if not payload_mb:
            return
    with (context / "payload.bin").open("wb") as out:
        for _ in range(payload_mb):
            out.write(os.urandom(1024 * 1024))
    (context / "Dockerfile").write_text(
        f"FROM {base}\nCOPY payload.bin /payload-{secrets.token_hex(3)}.bin\n"
    )
    sh("docker", "build", "-q", "-t", reference, str(context))


def save(reference: str, path: Path) -> int:
    sh("docker", "save", "-o", str(path), reference)
    return path.stat().st_size


def upload(
    api: str, auth: dict[str, str], path: Path, name: str, version: str
) -> tuple[float, dict[str, Any]]:
    """Seconds from the first byte sent to the job's state 3, and the job's result."""

    def chunks() -> Any:
        with path.open("rb") as handle:
            while data := handle.read(1024 * 1024):
                yield data

    started = time.monotonic()
    with httpx.Client(base_url=api, timeout=httpx.Timeout(60.0, read=None), headers=auth) as client:
        answer = client.post(
            "/image/uploadImage",
            params={"image_name": name, "version": version},
            content=chunks(),
            headers={"Content-Type": "application/x-tar"},
        ).json()
        assert answer["code"] == 200, answer
        while True:
            job = client.get("/task/status", params={"jobid": answer["data"]["jobid"]}).json()["info"][0]
            if job["state"] in (3, 4):
                assert job["state"] == 3, job
                return time.monotonic() - started, job["result"]
            time.sleep(0.05)


class PeakRss:
    """Samples the resident set size of some processes every 50 ms."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            for name, proc in self.procs.items():
                self.peak[name] = max(self.peak[name], proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._run_once()
        self.thread.start()
        return self

    def _run_once(self) -> None:
        for name, proc in self.procs.items():
            self.peak[name] = proc.memory_info().rss

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def push_as_imager(platform: Platform, docker_config: Path, reference: str) -> None:
    """`docker push` as the registry's read-write user, logged in with a config folder of its own."""
    user, secret = platform.registry_credentials("imager")
    login = ["docker", "--config", str(docker_config), "login", "-u", user, "--password-stdin"]
    password = secret.encode()
    subprocess.run([*login, platform.config.registry], input=password, check=True, capture_output=True)
    sh("docker", "--config", str(docker_config), "push", reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=256, help="payload of the throughput image")
    parser.add_argument("--big-mb", type=int, default=1024, help="payload of the memory image")
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
            colour=False,
            log_file=folder / "platform.log",
        )
        platform = Platform(config)
        created: list[str] = []
        try:
            platform.start_all()
            api = config.api_url
            base, v1, v2, big = (f"tybench/{kind}:{tag}" for kind in ("base", "v1", "v2", "big"))
            build(folder, base, None, 0)
            build(folder, v1, base, args.mb)
            build(folder, v2, v1, 8)
            created += [base, v1, v2]
            size = save(v1, folder / "v1.tar")

            seconds, result = upload(api, bearer(config), folder / "v1.tar", f"bench-{tag}", "v1")
            ours = size / seconds / 1e6
            baseline_ref = f"{config.registry}/baseline-{tag}:v1"
            sh("docker", "rmi", v1)
            started = time.monotonic()
            sh("docker", "load", "-i", str(folder / "v1.tar"))
            sh("docker", "tag", v1, baseline_ref)
            push_as_imager(platform, folder / "docker", baseline_ref)
            theirs = size / (time.monotonic() - started) / 1e6
            created.append(baseline_ref)
            print(f"tar {size / 1e6:.1f} MB: tingyu upload-to-pushed {seconds:.2f}s = {ours:.1f} MB/s")
            print(f"  docker load + push: {theirs:.1f} MB/s; ratio tingyu/docker = {ours / theirs:.2f}")
            print(f"  first version: {result['bytes_sent'] / 1e6:.1f} MB sent")

            size2 = save(v2, folder / "v2.tar")
            _, result2 = upload(api, bearer(config), folder / "v2.tar", f"bench-{tag}", "v2")
            print(
                f"second version (tar {size2 / 1e6:.1f} MB, one new 8 MB layer + config): "
                f"{result2['bytes_sent'] / 1e6:.2f} MB sent, {result2['bytes_skipped'] / 1e6:.1f} MB skipped"
            )

            build(folder, big, base, args.big_mb)
            created.append(big)
            big_size = save(big, folder / "big.tar")
            pids = {name: platform.procs[name].popen.pid for name in ("api", "imager")}
            with PeakRss(pids) as rss:
                seconds, _ = upload(api, bearer(config), folder / "big.tar", f"bench-big-{tag}", "v1")
            print(f"{big_size / 1e6:.0f} MB upload in {seconds:.1f}s ({big_size / seconds / 1e6:.1f} MB/s)")
            for name, peak in rss.peak.items():
                print(f"  peak RSS {name}: {peak / 1e6:.1f} MB")
        finally:
            for reference in created:
                subprocess.run(["docker", "rmi", "-f", reference], check=False, capture_output=True)
            platform.stop()


if __name__ == "__main__":
    main()
