"""`tingyu image push|ls|rm|gc`: the image interfaces from a terminal (over the HTTP API)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tingyu.cli import client

CHUNK = 1024 * 1024


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("image", help="push, list and remove catalog images")
    client.add_api_option(parser)
    verbs = parser.add_subparsers(dest="verb", required=True)

    push = verbs.add_parser("push", help="upload a `docker save` tar and wait until it is in the registry")
    push.add_argument("file", type=Path)
    push.add_argument("--name", required=True)
    push.add_argument("--version", required=True)
    push.add_argument("--detail", default="")
    push.add_argument("--image-url", default="")
    push.add_argument("--no-wait", action="store_true", help="print the jobid and return")
    push.set_defaults(func=push_image)

    ls = verbs.add_parser("ls", help="list catalog images (optionally those whose name contains WORD)")
    ls.add_argument("word", nargs="?", default="")
    ls.set_defaults(func=list_images)

    rm = verbs.add_parser("rm", help="delete an image, or one version with --version")
    rm.add_argument("name")
    rm.add_argument("--version", default="")
    rm.set_defaults(func=remove_image)

    gc = verbs.add_parser("gc", help="run the registry's garbage collection (local registry, offline)")
    gc.add_argument("--config", type=Path, default=Path("var/registry/config.yml"))
    gc.add_argument("--dry-run", action="store_true")
    gc.set_defaults(func=collect_garbage)


def _bar(done: int, total: int, started: float, label: str) -> None:
    width = 30
    share = done / total if total else 1.0
    rate = done / max(time.monotonic() - started, 1e-6) / 1e6
    filled = "#" * int(share * width)
    line = f"\r{label:<10} [{filled:<{width}}] {share:6.1%} {done / 1e6:9.1f} MB {rate:7.1f} MB/s"
    print(line, end="", file=sys.stderr, flush=True)


def _chunks(path: Path, total: int) -> Iterator[bytes]:
    started = time.monotonic()
    done = 0
    with path.open("rb") as handle:
        while data := handle.read(CHUNK):
            done += len(data)
            _bar(done, total, started, "upload")
            yield data
    print(file=sys.stderr)


def push_image(args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.is_file():
        print(
            f"error: {path} is not a file.\n"
            f"next: save an image first, e.g. `docker save myimage:1 -o {path}` "
            "(no image at hand? `tingyu up` puts a demo image into the catalog: `tingyu image ls demo`)",
            file=sys.stderr,
        )
        return 2
    params = {"image_name": args.name, "version": args.version, "detail": args.detail}
    if args.image_url:
        params["image_url"] = args.image_url
    with client.api(args.api, timeout=httpx.Timeout(60.0, read=None)) as http:
        answer = http.post(
            "/image/uploadImage",
            params=params,
            content=_chunks(path, path.stat().st_size),
            headers={"Content-Type": "application/x-tar"},
        ).json()
        if answer.get("code") != 200:
            return client.fail(answer)
        job_id = answer["data"]["jobid"]
        print(f"jobid {job_id}", file=sys.stderr)
        if args.no_wait:
            print(job_id)
            return 0
        return _follow(http, job_id)


def _follow(http: httpx.Client, job_id: str) -> int:
    started = time.monotonic()
    while True:
        job = http.get("/task/status", params={"jobid": job_id}).json()["info"][0]
        result = job.get("result") or {}
        if job.get("state") == 3:
            _bar(1, 1, started, "push")
            print(f"\n{result.get('reference', '')} {result.get('digest', '')}")
            return 0
        if job.get("state") == 4:
            print(f"\nfailed: {job.get('message')} {result.get('detail', '')}".rstrip(), file=sys.stderr)
            return 1
        if result.get("bytes_total"):
            _bar(int(result.get("bytes_done", 0)), int(result["bytes_total"]), started, "push")
        time.sleep(0.5)


def list_images(args: argparse.Namespace) -> int:
    with client.api(args.api, timeout=30.0) as http:
        answer = http.get("/image/search", params={"wordKey": args.word}).json()
    if answer.get("code") != 200:
        return client.fail(answer)
    print(f"{'IMAGE':<40} {'VERSION':<20} {'SIZE':>10} {'LAYERS':>6}  {'UPLOADED':<19}  DIGEST")
    for image in answer["data"]:
        for v in image["versions"]:
            size = f"{v['size'] / 1e6:.1f}MB"
            print(
                f"{image['name']:<40} {v['version']:<20} {size:>10} {v['layers']:>6}  "
                f"{v['uploadtime']:<19}  {v['digest'][:19]}"
            )
    return 0


def remove_image(args: argparse.Namespace) -> int:
    with client.api(args.api, timeout=30.0) as http:
        if args.version:
            params = {"image": args.name, "imageVersion": args.version}
            answer = http.delete("/image/deleteByImageVersion", params=params).json()
        else:
            answer = http.delete("/image/deleteByImage", params={"image": args.name}).json()
    if answer.get("code") != 200:
        return client.fail(answer)
    print(f"deleted {args.name}{':' + args.version if args.version else ''}")
    return 0


def collect_garbage(args: argparse.Namespace) -> int:
    """Distribution's own offline GC; run it while nothing pushes (see docs/images.md)."""
    argv = ["docker-registry", "garbage-collect", "--delete-untagged", str(args.config)]
    if args.dry_run:
        argv.insert(2, "--dry-run")
    return subprocess.run(argv, check=False).returncode
