"""Entry point of the `tingyu` command; each sub-command lives in its own module."""

from __future__ import annotations

import argparse
import sys

from tingyu.cli import audit, dead, exec, images, logs, node, sim, tokens, up

COMMANDS = [up, images, sim, dead, tokens, audit, node, logs, exec]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tingyu", description="Tingyu edge container platform")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(commands)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
