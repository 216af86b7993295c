"""Entry point of the `tingyu` command; each sub-command lives in its own module."""

from __future__ import annotations

import argparse
import sys

import httpx

from tingyu.cli import audit, dead, doctor, exec, images, logs, node, sim, tokens, up

COMMANDS = [up, images, sim, dead, doctor, tokens, audit, node, logs, exec]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tingyu", description="Tingyu edge container platform")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(commands)
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except httpx.ConnectError as exc:
        where = getattr(args, "api", "") or "the API"
        print(
            f"error: cannot reach {where} ({exc}).\n"
            "next: start the platform with `make up` (it prints `Tingyu is up` when ready), "
            "or point --api at a running one.",
            file=sys.stderr,
        )
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}.\nnext: run `make deps` (installs docker.io, docker-registry, busybox-static).")
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
