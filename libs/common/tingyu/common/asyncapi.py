"""An AsyncAPI 3.0 document of every subject the platform uses, generated from `subjects`.

Channels come from the declarations themselves: each subject `Family` (with the line that documents
it in `subjects.py`), each KV bucket (a watch on `$KV.<bucket>.<key>` sees every change: jobs,
machines, rollouts ...), and each request/reply subject. Payload schemas are the pydantic models'
JSON schemas. `python -m tingyu.common.asyncapi` prints the JSON; `--markdown` prints docs/events.md.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import sys
from functools import lru_cache
from typing import Any

from pydantic.json_schema import models_json_schema

from tingyu.common import subjects
from tingyu.common.models.audit import AuditEvent
from tingyu.common.models.base import Message
from tingyu.common.models.containers import DesiredListing, DesiredListingRequest
from tingyu.common.models.dead import DeadLetter
from tingyu.common.models.files import FileFetchCommand, FileFetchReply
from tingyu.common.models.images import ImagerReply, ImagerRequest
from tingyu.common.models.joblog import JobLogLine
from tingyu.common.models.metering import MeteringQuery, MeteringReply
from tingyu.common.models.nodes import Heartbeat, NodesHeard
from tingyu.common.models.remote import ExecReply, ExecRequest, LogsReply, LogsRequest, PullReply, PullRequest

VERSION = "0.1.0"

# Families no durable consumer declares a model for (core NATS, or read by `tingyu dead`).
FAMILY_MODELS: dict[str, type[Message]] = {
    "ty.hb": Heartbeat,
    "ty.nodes.heard": NodesHeard,
    "ty.dead": DeadLetter,
    "ty.audit": AuditEvent,
    "ty.joblog": JobLogLine,
}

# Request/reply subjects: (address, request, reply, what it is).
REQUESTS: tuple[tuple[str, type[Message], type[Message], str], ...] = (
    (subjects.METERING_QUERY, MeteringQuery, MeteringReply, "The API asks metering for a time range."),
    (subjects.IMAGER_QUERY, ImagerRequest, ImagerReply, "Catalog search and deletes (the imager)."),
    (
        subjects.desired_listing("{uuid}"),
        DesiredListingRequest,
        DesiredListing,
        "One agent asks the deployer for its own desired state, read in one cut of `ty_desired`.",
    ),
    (
        subjects.agent_request("{uuid}", "file"),
        FileFetchCommand,
        FileFetchReply,
        "The deployer asks one agent for a file out of a container.",
    ),
    (
        subjects.agent_request("{uuid}", "logs"),
        LogsRequest,
        LogsReply,
        "The API asks one agent for a container's logs; a followed stream then sends `LogFrame`s "
        "to the asker's reply inbox (docs/remote.md).",
    ),
    (
        subjects.agent_request("{uuid}", "exec"),
        ExecRequest,
        ExecReply,
        "The API runs a command in a container on one agent; an interactive session answers "
        "`ExecStarted`, reads `ExecInput` on `ty.agent.{uuid}.req.exec.{session}` and sends `ExecOutput` "
        "to the asker's reply inbox (docs/remote.md).",
    ),
    (
        subjects.agent_request("{uuid}", "pull"),
        PullRequest,
        PullReply,
        "The deployer asks one agent to have an image (a pre-pull).",
    ),
)


def family_docs() -> dict[str, str]:
    """The documenting string under each `Family(...)` assignment in subjects.py, by variable name."""
    tree = ast.parse(inspect.getsource(subjects))
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(tree.body):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.targets[0].id] = after.value.value
    return docs


def families() -> dict[str, subjects.Family]:
    return {name: value for name, value in vars(subjects).items() if isinstance(value, subjects.Family)}


def family_model(family: subjects.Family) -> type[Message] | None:
    for spec in subjects.ALL_CONSUMERS:
        if spec.subject == family.all:
            return spec.model
    return FAMILY_MODELS.get(family.prefix)


def stream_of(prefix: str) -> subjects.StreamSpec | None:
    for stream in subjects.ALL_STREAMS:
        if any(f"{prefix}.".startswith(pattern.removesuffix(">")) for pattern in stream.subjects):
            return stream
    return None


def _ref(model: type[Message]) -> dict[str, str]:
    return {"$ref": f"#/components/messages/{model.__name__}"}


@lru_cache
def document() -> dict[str, Any]:
    """The whole AsyncAPI document (built once per process)."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    models: set[type[Message]] = set()
    docs = family_docs()
    for name, family in families().items():
        model = family_model(family)
        if model is None:
            raise ValueError(f"subjects.{name} ({family.prefix}) has no model: name one in asyncapi")
        models.add(model)
        stream = stream_of(family.prefix)
        where = f" Stream `{stream.name}`: {stream.description}" if stream else " Core NATS (not stored)."
        channels[name] = {
            "address": f"{family.prefix}.{{id}}",
            "description": docs.get(name, "") + where,
            "parameters": {"id": {"description": "The entity the message is about (see above)."}},
            "messages": {model.__name__: _ref(model)},
        }
        for spec in subjects.ALL_CONSUMERS:
            if spec.subject == family.all:
                operations[spec.durable] = {
                    "action": "receive",
                    "channel": {"$ref": f"#/channels/{name}"},
                    "description": f"Durable consumer `{spec.durable}` (max {spec.max_deliver} deliveries).",
                }
    for bucket in subjects.ALL_BUCKETS:
        models.add(bucket.model)
        channels[bucket.name] = {
            "address": f"{bucket.prefix}{{key}}",
            "description": f"KV bucket `{bucket.name}` (watch it to follow changes): {bucket.description}",
            "parameters": {"key": {"description": "The bucket's key."}},
            "messages": {bucket.model.__name__: _ref(bucket.model)},
        }
    for address, request, reply, what in REQUESTS:
        models.update((request, reply))
        key = address.replace(".", "_").replace("{uuid}", "uuid")
        channels[key] = {
            "address": address,
            "description": f"Request/reply: {what}",
            "messages": {request.__name__: _ref(request), reply.__name__: _ref(reply)},
        }
        operations[f"{key}_request"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{request.__name__}"}],
            "reply": {"messages": [{"$ref": f"#/channels/{key}/messages/{reply.__name__}"}]},
        }
    ordered = sorted(models, key=lambda m: m.__name__)
    _, schemas = models_json_schema(
        [(m, "validation") for m in ordered], ref_template="#/components/schemas/{model}"
    )
    messages = {
        m.__name__: {
            "name": m.__name__,
            "summary": (m.__doc__ or "").strip().splitlines()[0] if m.__doc__ else "",
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{m.__name__}"},
        }
        for m in ordered
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Tingyu events",
            "version": VERSION,
            "description": "Every NATS subject of the Tingyu platform, generated from "
            "libs/common/tingyu/common/subjects.py and its pydantic models.",
        },
        "defaultContentType": "application/json",
        "servers": {"nats": {"host": "127.0.0.1:4222", "protocol": "nats"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas.get("$defs", {})},
    }


def markdown() -> str:
    """docs/events.md: one table of channels, then each message's fields."""
    doc = document()
    lines = [
        "# Events and subjects",
        "",
        "Generated from `libs/common/tingyu/common/subjects.py` by "
        "`python -m tingyu.common.asyncapi --markdown > docs/events.md` (a test keeps it current).",
        "The same document is served as AsyncAPI 3.0 at `/tingyu/asyncapi.json`.",
        "",
        "To follow jobs or machines, watch the KV buckets `ty_jobs` and `ty_nodes` "
        "(subjects `$KV.ty_jobs.>`, `$KV.ty_nodes.>`), e.g. `nats kv watch ty_jobs`.",
        "",
        "| channel | subject | message | what |",
        "|---|---|---|---|",
    ]
    for name, channel in doc["channels"].items():
        names = ", ".join(f"`{m}`" for m in channel["messages"])
        text = channel["description"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {name} | `{channel['address']}` | {names} | {text} |")
    lines += ["", "## Messages and the types they use", ""]
    for name, schema in doc["components"]["schemas"].items():
        summary = (schema.get("description") or "").strip().splitlines()
        lines += [f"### {name}", "", summary[0] if summary else "", ""]
        if "enum" in schema:
            lines += ["One of: " + ", ".join(f"`{value}`" for value in schema["enum"]), ""]
            continue
        lines += ["| field | type |", "|---|---|"]
        for field, prop in schema.get("properties", {}).items():
            lines.append(f"| `{field}` | {_type(prop)} |")
        lines.append("")
    return "\n".join(lines)


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}))}"
    return str(schema.get("type", "any"))


if __name__ == "__main__":
    sys.stdout.write(markdown() + "\n" if "--markdown" in sys.argv else json.dumps(document(), indent=2))
