"""`tingyu node enroll-token|revoke`: let a machine join, or cut one off.

Both run where the platform's trust material is (`TINGYU_NATS_AUTH_DIR`, `var/nats/auth` for
`tingyu up`) with an admin NATS credential (`TINGYU_NATS_CREDS`, or that folder's admin user).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from tingyu.common.auth.enrollment import new_token, revoke_machine
from tingyu.common.bus import Bus
from tingyu.common.errors import TingyuError
from tingyu.common.models.nodes import OPERATORS
from tingyu.common.settings import get_platform_settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("node", help="enroll and revoke machines")
    verbs = parser.add_subparsers(dest="verb", required=True)
    token = verbs.add_parser("enroll-token", help="a one-time token a new machine's agent enrolls with")
    token.add_argument("--area", default="", help="the machine's area, unless its agent sets one")
    token.add_argument("--operator", default="", choices=["", *OPERATORS], help="its ISP, likewise")
    token.add_argument("--ttl-hours", type=float, default=24.0, help="valid this long")
    token.add_argument("--uses", type=int, default=1, help="machines that may enroll with it")
    token.set_defaults(func=enroll_token)
    revoke = verbs.add_parser("revoke", help="cut a machine off NATS now and for good")
    revoke.add_argument("uuid")
    revoke.set_defaults(func=revoke_node)


async def _with_bus(name: str) -> Bus:
    return await Bus.connect(get_platform_settings(), name, attempts=3)


def enroll_token(args: argparse.Namespace) -> int:
    async def make() -> str:
        bus = await _with_bus("tingyu-cli")
        try:
            return await new_token(bus, args.area, args.operator, args.ttl_hours * 3600.0, max(args.uses, 1))
        finally:
            await bus.close()

    token = asyncio.run(make())
    print(token)
    print(
        f"valid {args.ttl_hours:g} h for {max(args.uses, 1)} machine(s): set TINGYU_AGENT_ENROLL_TOKEN "
        "on the machine before its agent's first start",
        file=sys.stderr,
    )
    return 0


def revoke_node(args: argparse.Namespace) -> int:
    async def revoke() -> str:
        bus = await _with_bus("tingyu-cli")
        try:
            return await revoke_machine(bus, get_platform_settings(), args.uuid)
        finally:
            await bus.close()

    try:
        key = asyncio.run(revoke())
    except TingyuError as exc:
        print(f"{exc.code}: {exc.detail or exc.msg}", file=sys.stderr)
        return 1
    print(f"machine {args.uuid} revoked (key {key}); its connections are closed")
    return 0
