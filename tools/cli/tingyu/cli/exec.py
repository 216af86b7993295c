"""`tingyu exec NAME -- CMD...`: a command in a container on its machine, through the API.

By default an interactive session over the API's WebSocket (a TTY when stdin is one: raw keys,
window resizes); the exit code of the remote command is this command's exit code. `--wait` runs it
without a session and prints its output (docs/remote.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tingyu.cli.client import add_api_option, api, auth_headers, fail


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("exec", help="run a command in a container (interactive by default)")
    add_api_option(parser)
    parser.add_argument("--wait", action="store_true", help="no session: run to the end, print the output")
    parser.add_argument("-T", "--no-tty", action="store_true", help="no TTY even when stdin is one")
    parser.add_argument("--timeout", type=float, default=0, help="--wait: seconds at most")
    parser.add_argument("name")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command and its arguments")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("give the command after --, e.g. tingyu exec web -- sh", file=sys.stderr)
        return 2
    if args.wait:
        return wait(args.api, args.name, cmd, args.timeout)
    use_tty = sys.stdin.isatty() and not args.no_tty
    return asyncio.run(session(args.api, args.name, cmd, use_tty))


def wait(root: str, name: str, cmd: list[str], timeout: float) -> int:
    with api(root, timeout=httpx.Timeout(30.0, read=None)) as client:
        body = client.post("/container/exec", json={"name": name, "cmd": cmd, "timeout": timeout}).json()
    if body.get("code") != 200:
        return fail(body)
    sys.stdout.write(body["data"]["output"])
    sys.stdout.flush()
    return int(body["data"]["exit_code"])


def ws_url(api: str, name: str, cmd: list[str], use_tty: bool) -> str:
    cols, rows = shutil.get_terminal_size()
    query = urlencode([("name", name), *(("cmd", part) for part in cmd), ("tty", str(use_tty).lower())])
    if use_tty:
        query += f"&cols={cols}&rows={rows}"
    base = api.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return f"{base}/container/exec?{query}"


@contextlib.contextmanager
def raw_terminal(use_tty: bool) -> Iterator[None]:
    """Keys go to the remote side as typed (Ctrl-C included) while the session lasts."""
    if not use_tty:
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)  # keys typed ahead are kept, not flushed
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def session(root: str, name: str, cmd: list[str], use_tty: bool) -> int:
    """The session over the API's WebSocket; the upgrade carries the caller's bearer token, and a
    refused upgrade (401, 403, 429) answers its envelope as the HTTP body."""
    url = ws_url(root, name, cmd, use_tty)
    try:
        ws = await connect(url, max_size=None, ping_interval=20, additional_headers=auth_headers())
    except InvalidStatus as exc:
        return refusal(exc)
    async with ws:
        with raw_terminal(use_tty):
            feeding = asyncio.create_task(feed(ws, use_tty))
            try:
                return await output(ws)
            finally:
                feeding.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await feeding


def refusal(exc: InvalidStatus) -> int:
    try:
        body: dict[str, Any] = json.loads(exc.response.body or b"")
    except ValueError:
        body = {"code": exc.response.status_code, "msg": exc.response.reason_phrase}
    return fail(body)


async def feed(ws: ClientConnection, use_tty: bool) -> None:
    """Stdin (and window sizes) to the session; the end of stdin is sent as `eof`."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes | str] = asyncio.Queue()  # text: a control message
    fd = sys.stdin.fileno()
    loop.add_reader(fd, lambda: chunks.put_nowait(os.read(fd, 4096)))
    if use_tty:

        def resized() -> None:
            cols, rows = shutil.get_terminal_size()
            chunks.put_nowait(json.dumps({"resize": [cols, rows]}))

        loop.add_signal_handler(signal.SIGWINCH, resized)
    try:
        while (chunk := await chunks.get()) != b"":
            await ws.send(chunk)
        loop.remove_reader(fd)
        await ws.send(json.dumps({"eof": True}))
        await asyncio.Event().wait()
    finally:
        loop.remove_reader(fd)
        if use_tty:
            loop.remove_signal_handler(signal.SIGWINCH)


async def output(ws: ClientConnection) -> int:
    """Output to stdout until the last message, whose exit code is returned."""
    async for message in ws:
        if isinstance(message, bytes):
            sys.stdout.buffer.write(message)
            sys.stdout.buffer.flush()
            continue
        body: dict[str, Any] = json.loads(message)
        if body.get("code") != 200:
            return fail(body)
        data = body.get("data") or {}
        if data.get("reason"):
            print(f"\r\n-- session ended: {data['reason']}", file=sys.stderr)
        code = data.get("exit_code")
        return int(code) if code is not None else 1
    print("the session closed without an exit code", file=sys.stderr)
    return 1
