"""`tingyu dead ls|show|replay|rm`: messages a consumer gave up on (stream `TY_DEAD`).

Each dead letter keeps the message's subject, headers and bytes and the reason it was parked.
`replay` publishes the original message again on its original subject (for samples and agent
reports that failed on a fault since fixed). A command whose job was failed when it was parked
stays failed: replaying it does nothing; submit the operation again instead.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import sys
from collections.abc import Awaitable, Callable

from nats.js import errors as js_errors

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.dead import DeadLetter
from tingyu.common.settings import get_platform_settings

REPLAY_DROPS = ("Nats-Msg-Id",)  # a replay is a new message, not a duplicate of the dead one


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("dead", help="inspect and replay dead letters (TY_DEAD)")
    verbs = parser.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("ls", help="list dead letters, oldest first")
    ls.add_argument("--consumer", default="", help="only this consumer's (its durable name)")
    ls.add_argument("--limit", type=int, default=100)
    ls.set_defaults(func=_run(list_letters))
    show = verbs.add_parser("show", help="one dead letter with its headers and body")
    show.add_argument("id", type=int, help="the ID column of `tingyu dead ls`")
    show.set_defaults(func=_run(show_letter))
    replay = verbs.add_parser("replay", help="publish the original message again, then remove the letter")
    replay.add_argument("id", type=int)
    replay.set_defaults(func=_run(replay_letter))
    rm = verbs.add_parser("rm", help="remove a dead letter")
    rm.add_argument("id", type=int)
    rm.set_defaults(func=_run(remove_letter))


def _run(verb: Callable[[Bus, argparse.Namespace], Awaitable[int]]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def connected() -> int:
            bus = await Bus.connect(get_platform_settings(), "tingyu-cli", attempts=3)
            try:
                return await verb(bus, args)
            finally:
                await bus.close()

        return asyncio.run(connected())

    return run


async def letters(bus: Bus, consumer: str = "", limit: int = 1000) -> list[tuple[int, DeadLetter]]:
    """Dead letters with their ids (stream sequence numbers), oldest first."""
    subject = subjects.dead(consumer) if consumer else subjects.DEAD_ALL
    found: list[tuple[int, DeadLetter]] = []
    seq = 0
    while len(found) < limit:
        try:
            raw = await bus.js.get_msg(subjects.DEAD.name, seq=seq + 1, subject=subject, next=True)
        except js_errors.NotFoundError:
            break
        seq = raw.seq or seq + 1
        found.append((seq, DeadLetter.from_bytes(raw.data or b"")))
    return found


async def letter(bus: Bus, seq: int) -> DeadLetter | None:
    try:
        raw = await bus.js.get_msg(subjects.DEAD.name, seq=seq)
    except js_errors.NotFoundError:
        return None
    return DeadLetter.from_bytes(raw.data or b"")


async def list_letters(bus: Bus, args: argparse.Namespace) -> int:
    found = await letters(bus, args.consumer, args.limit)
    if not found:
        print("no dead letters")
        return 0
    print(f"{'ID':>6}  {'WHEN':19}  {'CONSUMER':20}  {'SUBJECT':40}  REASON")
    for seq, dead in found:
        when = dt.datetime.fromtimestamp(dead.dead_at).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{seq:>6}  {when:19}  {dead.durable:20}  {dead.subject:40}  {dead.reason[:120]}")
    return 0


async def show_letter(bus: Bus, args: argparse.Namespace) -> int:
    dead = await letter(bus, args.id)
    if dead is None:
        print(f"no dead letter {args.id}: see `tingyu dead ls`", file=sys.stderr)
        return 1
    print(dead.model_dump_json(indent=2, exclude={"data_b64"}))
    print(base64.b64decode(dead.data_b64).decode(errors="replace"))
    return 0


async def replay_letter(bus: Bus, args: argparse.Namespace) -> int:
    dead = await letter(bus, args.id)
    if dead is None:
        print(f"no dead letter {args.id}: see `tingyu dead ls`", file=sys.stderr)
        return 1
    if dead.truncated:
        print(f"dead letter {args.id} kept only part of its message; it cannot be replayed", file=sys.stderr)
        return 1
    headers = {k: v for k, v in dead.headers.items() if k not in REPLAY_DROPS} or None
    data = base64.b64decode(dead.data_b64)
    bus.check(dead.subject, len(data), headers)  # refused here, never by a server that would hang up
    await bus.js.publish(dead.subject, data, headers=headers)
    await bus.js.delete_msg(subjects.DEAD.name, args.id)
    print(f"replayed {dead.subject}")
    return 0


async def remove_letter(bus: Bus, args: argparse.Namespace) -> int:
    try:
        await bus.js.delete_msg(subjects.DEAD.name, args.id)
    except js_errors.Error:
        print(f"no dead letter {args.id}: see `tingyu dead ls`", file=sys.stderr)
        return 1
    print(f"removed dead letter {args.id}")
    return 0
