"""The demo image `make up` puts into the catalog: Debian's busybox-static, built here, nothing pulled.

It is built with `docker import` from a one-binary root filesystem, saved with `docker save` and
uploaded through the API like any image, so the README's first deployment works on an offline box.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tingyu.cli.client import auth_headers

DEMO_IMAGE = "demo"
DEMO_VERSION = "1"
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
APPLETS = ("sh", "sleep", "cat", "echo", "ls", "date", "httpd", "wget")
# Prints a line a minute, so `docker logs <name>` shows it alive.
COMMAND = 'while true; do echo "tingyu demo: port=${port:-unset} $(date)"; sleep 60; done'


class DemoImageError(Exception):
    """The demo image could not be built or uploaded; the text says what to do."""


def build_tar(target: Path) -> None:
    """`docker import` a busybox root filesystem as tingyu-demo:1, then `docker save` it to `target`."""
    if not BUSYBOX.is_file():
        raise DemoImageError(f"{BUSYBOX} is missing: install it with `apt-get install busybox-static`")
    reference = f"tingyu-{DEMO_IMAGE}:{DEMO_VERSION}"
    with tempfile.TemporaryDirectory() as root:
        bin_dir = Path(root, "bin")
        bin_dir.mkdir()
        binary = bin_dir / "busybox"
        binary.write_bytes(BUSYBOX.read_bytes())
        binary.chmod(0o755)
        for applet in APPLETS:
            (bin_dir / applet).symlink_to("busybox")
        rootfs = subprocess.run(["tar", "-C", root, "-c", "."], check=True, capture_output=True).stdout
    _run(["docker", "import", "-c", f"CMD {_json_cmd()}", "-", reference], rootfs)
    _run(["docker", "save", reference, "-o", str(target)])


def _json_cmd() -> str:
    escaped = COMMAND.replace("\\", "\\\\").replace('"', '\\"')
    return f'["/bin/sh", "-c", "{escaped}"]'


def _run(argv: list[str], stdin: bytes | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        text = done.stderr.decode(errors="replace").strip()
        raise DemoImageError(f"`{' '.join(argv[:2])}` failed: {text}")


def in_catalog(client: httpx.Client) -> bool:
    answer = client.get("/image/search", params={"wordKey": DEMO_IMAGE}).json()
    for image in answer.get("data") or []:
        if image.get("name") == DEMO_IMAGE:
            return any(v.get("version") == DEMO_VERSION for v in image.get("versions", []))
    return False


def ensure(api_url: str, token: str, timeout_s: float = 120.0) -> str:
    """Put demo:1 into the catalog (with `token`, an admin's) unless it is there; answers what
    happened, in one line."""
    timeout = httpx.Timeout(60.0, read=None)
    with httpx.Client(base_url=api_url, headers=auth_headers(token), timeout=timeout) as client:
        if in_catalog(client):
            return f"the demo image {DEMO_IMAGE}:{DEMO_VERSION} is in the catalog"
        with tempfile.TemporaryDirectory() as folder:
            tar = Path(folder, "demo.tar")
            build_tar(tar)
            params = {"image_name": DEMO_IMAGE, "version": DEMO_VERSION, "detail": "busybox demo (make up)"}
            answer = client.post(
                "/image/uploadImage",
                params=params,
                content=tar.read_bytes(),
                headers={"Content-Type": "application/x-tar"},
            ).json()
        if answer.get("code") != 200:
            raise DemoImageError(f"the upload was refused: {answer.get('msg')} {answer.get('detail', '')}")
        job_id = answer["data"]["jobid"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = client.get("/task/status", params={"jobid": job_id}).json()["info"][0]
            if job.get("state") == 3:
                return f"the demo image {DEMO_IMAGE}:{DEMO_VERSION} was built here and put into the catalog"
            if job.get("state") == 4:
                raise DemoImageError(f"the demo image's upload failed: {job.get('message')}")
            time.sleep(0.5)
        raise DemoImageError(f"the demo image's upload (job {job_id}) did not finish in {timeout_s:.0f}s")
