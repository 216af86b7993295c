"""`tingyu audit tail [-f]`: the API's audit events (admin token in `TINGYU_TOKEN`), oldest first."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from typing import Any

from tingyu.cli import client


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("audit", help="read the audit of API calls (admin)")
    client.add_api_option(parser)
    verbs = parser.add_subparsers(dest="verb", required=True)
    tail = verbs.add_parser("tail", help="print audit events; -f keeps following new ones")
    tail.add_argument("-f", "--follow", action="store_true")
    tail.add_argument(
        "--since", default="", help="epoch seconds or 'yyyy-MM-dd HH:mm:ss' (default: last hour)"
    )
    tail.add_argument("--actor", default="", help="only calls made with this token name")
    tail.add_argument("--action", default="", help="only this action (container.create) or area (container)")
    tail.add_argument("--json", action="store_true", help="one JSON event per line")
    tail.set_defaults(func=tail_events)


def line(event: dict[str, Any]) -> str:
    when = dt.datetime.fromtimestamp(event["time"]).strftime("%Y-%m-%d %H:%M:%S")
    who = event.get("actor") or "-"
    targets = ",".join(event.get("machines", []) + event.get("targets", [])) or "-"
    jobs = ",".join(event.get("job_ids", [])) or "-"
    return (
        f"{when}  {event['status']} {event['code']:<7} {event['action']:<28} {who:<16} "
        f"{event.get('client', ''):<15} targets={targets} jobs={jobs} req={event['request_id']}"
    )


def tail_events(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"actor": args.actor, "action": args.action, "limit": 1000}
    params["since"] = args.since or str(time.time() - 3600)
    with client.api(args.api, timeout=30.0) as http:
        while True:
            answer = http.get("/audit", params=params).json()
            if answer.get("code") != 200:
                return client.fail(answer)
            page = answer["data"]
            for event in page["events"]:
                print(json.dumps(event, ensure_ascii=False) if args.json else line(event), flush=True)
            params["after"] = page["next"] or params.get("after", 0)
            if page["more"]:
                continue
            if not args.follow:
                return 0
            time.sleep(1.0)
