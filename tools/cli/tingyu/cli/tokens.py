"""`tingyu token create|ls|revoke`: API tokens, managed with an admin token (`TINGYU_TOKEN`)."""

from __future__ import annotations

import argparse
import sys

from tingyu.cli import client


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("token", help="create, list and revoke API tokens (admin)")
    client.add_api_option(parser)
    verbs = parser.add_subparsers(dest="verb", required=True)

    create = verbs.add_parser("create", help="make a token and print its secret (shown this once)")
    create.add_argument("--name", required=True, help="unique among active tokens; the audit shows it")
    create.add_argument("--role", required=True, choices=("viewer", "operator", "admin"))
    create.add_argument(
        "--areas", default="", help="comma-separated areas it may act on (default: every area)"
    )
    create.set_defaults(func=create_token)

    ls = verbs.add_parser("ls", help="list tokens (never their secrets)")
    ls.add_argument("--all", action="store_true", help="revoked ones too")
    ls.set_defaults(func=list_tokens)

    revoke = verbs.add_parser("revoke", help="revoke a token by name or id; refused from the next call on")
    revoke.add_argument("name", metavar="NAME_OR_ID")
    revoke.set_defaults(func=revoke_token)


def create_token(args: argparse.Namespace) -> int:
    areas = [area.strip() for area in args.areas.split(",") if area.strip()]
    body = {"name": args.name, "role": args.role, "areas": areas}
    with client.api(args.api, timeout=30.0) as http:
        answer = http.post("/token/create", json=body).json()
    if answer.get("code") != 200:
        return client.fail(answer)
    made = answer["data"]
    print(
        f"token {made['name']} ({made['id']}), role {made['role']}, areas {','.join(made['areas']) or 'all'}",
        file=sys.stderr,
    )
    print("the secret is shown this once; keep it where your client reads TINGYU_TOKEN:", file=sys.stderr)
    print(made["token"])
    return 0


def list_tokens(args: argparse.Namespace) -> int:
    with client.api(args.api, timeout=30.0) as http:
        answer = http.get("/token/list").json()
    if answer.get("code") != 200:
        return client.fail(answer)
    print(f"{'ID':<16}  {'NAME':<24} {'ROLE':<8} {'AREAS':<20} {'CREATED':<19}  STATE")
    for token in answer["data"]:
        if token["revoked"] and not args.all:
            continue
        state = (
            f"revoked {token.get('revoketime', '')} by {token.get('revokedby', '')}"
            if token["revoked"]
            else "active"
        )
        areas = ",".join(token["areas"]) or "all"
        name, role, created = token["name"], token["role"], token["createtime"]
        print(f"{token['id']:<16}  {name:<24} {role:<8} {areas:<20} {created:<19}  {state}")
    return 0


def revoke_token(args: argparse.Namespace) -> int:
    with client.api(args.api, timeout=30.0) as http:
        answer = http.delete("/token/revoke", params={"name": args.name}).json()
    if answer.get("code") != 200:
        return client.fail(answer)
    print(f"revoked {answer['data']['name']} ({answer['data']['id']})")
    return 0
