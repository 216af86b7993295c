"""`tingyu logs [-f] [--tail N] NAME`: a container's logs through the API (docs/remote.md)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx

from tingyu.cli.client import add_api_option, api, fail


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("logs", help="a container's stdout and stderr (on its machine)")
    add_api_option(parser)
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument("--tail", type=int, default=100, help="lines from the end (default 100)")
    parser.add_argument("--since", default="", help="epoch seconds, yyyy-MM-dd HH:mm:ss or a duration (10m)")
    parser.add_argument("--timestamps", action="store_true")
    parser.add_argument("--seconds", type=float, default=0, help="follow at most this long (0: the maximum)")
    parser.add_argument("name")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"name": args.name, "tail": args.tail, "timestamps": args.timestamps}
    if args.since:
        params["since"] = args.since
    with api(args.api, timeout=httpx.Timeout(30.0, read=None)) as client:
        if not args.follow:
            body = client.get("/container/logs", params=params).json()
            if body.get("code") != 200:
                return fail(body)
            for line in body["data"]["lines"]:
                print(line)
            return 0
        params.update(follow=True, seconds=args.seconds)
        with client.stream("GET", "/container/logs", params=params) as response:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                return fail(json.loads(response.read()))
            return follow(response)


def follow(response: httpx.Response) -> int:
    """Print each event's line; the `end` event says why the stream ended."""
    event = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]
            if event == "end":
                ended = json.loads(data)
                print(f"-- {ended.get('detail') or ended.get('msg')}", file=sys.stderr)
                return 0
            print(data, flush=True)
        elif not line:
            event = ""
    return 0
