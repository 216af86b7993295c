"""`tingyu doctor`: what in a running platform needs a person's attention.

It checks, and prints one line per finding:
- NATS is reachable and JetStream answers; the image registry answers its API;
- every record in every bucket (`subjects.ALL_BUCKETS`) parses as the bucket's model (services log
  and skip a record that does not; this names each one);
- no job is still unfinished past its deadline (the longest a job of its kind may take, plus a grace);
- no dead letter waits in `TY_DEAD` (see `tingyu dead ls`);
- no consumer's backlog grows between two looks `--interval` seconds apart, and none is missing.
Exit code 0 when all is well, 1 when something needs attention, 2 when NATS cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import nats.errors
from nats.js import api as js_api
from nats.js import errors as js_errors
from pydantic import ValidationError

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.jobs import Job, JobKind
from tingyu.common.settings import PlatformSettings, get_platform_settings

EXIT_ATTENTION = 1
EXIT_UNREACHABLE = 2
CONNECT_TIMEOUT_S = 10.0  # nats-py keeps retrying a server that is down; the doctor does not wait
GRACE_S = 120.0  # past a job's own timeout, the worker's timer has had time to fail it


@dataclass(frozen=True)
class Finding:
    """One line of the report; `ok` False means it needs attention."""

    ok: bool
    what: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.what}"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("doctor", help="report corrupt records, stuck jobs, dead letters, backlogs")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between two looks at backlogs")
    parser.add_argument("--limit", type=int, default=20, help="corrupt records named per bucket")
    parser.set_defaults(func=doctor)


def doctor(args: argparse.Namespace) -> int:
    logging.getLogger("tingyu.common.bus").setLevel(logging.ERROR)  # the report says it all
    findings = asyncio.run(examine(get_platform_settings(), args.interval, args.limit))
    for finding in findings:
        print(finding.line(), flush=True)
    if any(f.what.startswith("nats:") and not f.ok for f in findings):
        return EXIT_UNREACHABLE
    return 0 if all(f.ok for f in findings) else EXIT_ATTENTION


async def examine(settings: PlatformSettings, interval_s: float = 2.0, limit: int = 20) -> list[Finding]:
    """Every finding about the platform that `settings` points at."""
    findings = [await registry_reachable(settings)]
    try:
        connecting = Bus.connect(settings, "tingyu-doctor", ensure=False, attempts=2)
        bus = await asyncio.wait_for(connecting, CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        return [Finding(False, f"nats: {settings.nats_url} not reachable ({type(exc).__name__})"), *findings]
    try:
        try:
            await asyncio.wait_for(bus.js.account_info(), 5)
        except Exception as exc:
            return [Finding(False, f"nats: JetStream does not answer ({type(exc).__name__})"), *findings]
        findings.insert(0, Finding(True, f"nats: connected to {settings.nats_url}, JetStream answers"))
        for spec in subjects.ALL_BUCKETS:
            findings.extend(await corrupt_records(bus, spec, limit))
        findings.extend(stuck_jobs(await bus.store(subjects.JOBS).values(), time.time()))
        findings.append(await dead_letters(bus))
        findings.extend(await backlogs(bus, interval_s))
    finally:
        await bus.close()
    return findings


async def registry_reachable(settings: PlatformSettings) -> Finding:
    """The registry answers `GET /v2/` (200, or 401 when it wants credentials)."""
    url = f"{settings.registry_url.rstrip('/')}/v2/"
    try:
        async with httpx.AsyncClient(timeout=5, verify=settings.registry_ca or True) as client:
            status = (await client.get(url)).status_code
    except httpx.HTTPError as exc:
        return Finding(False, f"registry: {url} not reachable ({type(exc).__name__})")
    return Finding(status in (200, 401), f"registry: {url} answers {status}")


async def raw_records(bus: Bus, spec: subjects.BucketSpec[Any]) -> AsyncIterator[tuple[str, bytes]]:
    """Every current key of a bucket with its bytes, as stored (no parsing)."""
    try:
        state = (await bus.js.stream_info(spec.stream)).state
    except js_errors.NotFoundError:
        return
    if not state.messages:
        return
    sub = await bus.js.pull_subscribe(
        spec.prefix + ">",
        stream=spec.stream,
        config=js_api.ConsumerConfig(
            deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=js_api.AckPolicy.NONE,
            inactive_threshold=60.0,
            mem_storage=True,
        ),
    )
    try:
        while True:
            try:
                msgs = await sub.fetch(1000, timeout=2.0)
            except TimeoutError:
                return
            for msg in msgs:
                if msg.data and not (msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE")):
                    yield msg.subject[len(spec.prefix) :], msg.data
            if msgs[-1].metadata.num_pending == 0:
                return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def corrupt_records(bus: Bus, spec: subjects.BucketSpec[Any], limit: int) -> list[Finding]:
    """One finding per record of `spec` that does not parse as its model (at most `limit` named)."""
    bad: list[str] = []
    count = 0
    async for key, data in raw_records(bus, spec):
        count += 1
        try:
            subjects.record_model(spec, key).model_validate_json(data)
        except ValidationError as exc:
            bad.append(f"{key} ({_reasons(exc)})")
    if not bad:
        return [Finding(True, f"bucket {spec.name}: all {count} records parse as {spec.model.__name__}")]
    named = [
        Finding(False, f"bucket {spec.name}: record {what} does not parse as {spec.model.__name__}")
        for what in bad[:limit]
    ]
    if len(bad) > limit:
        named.append(Finding(False, f"bucket {spec.name}: {len(bad) - limit} more records do not parse"))
    return named


def _reasons(exc: ValidationError, most: int = 3) -> str:
    """The first few of pydantic's complaints, as `field: what` (the value itself is not shown)."""
    parts = []
    for err in exc.errors()[:most]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "value"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def deadline_s(kind: JobKind) -> float:
    """The longest a job of `kind` may stay unfinished: its worker's own timeout, plus a grace."""
    from tingyu.deployer.config import DeployerSettings
    from tingyu.imager.config import ImagerSettings

    deployer = DeployerSettings()
    longest = {
        JobKind.CONTAINER: deployer.job_timeout_s,
        JobKind.ROLLOUT: deployer.job_timeout_s,
        JobKind.FILE: deployer.file_timeout_s + deployer.file_agent_wait_s,
        JobKind.IMAGE: ImagerSettings().push_timeout_s,
    }
    return longest[kind] + GRACE_S


def stuck_jobs(jobs: list[Job], now: float) -> list[Finding]:
    """Jobs not final although their deadline passed: a worker that should have finished them did not."""
    stuck = [
        job for job in jobs if not job.state.final and now - job.created_at > deadline_s(JobKind(job.kind))
    ]
    found = [
        Finding(
            False,
            f"job {job.job_id} ({job.kind.value} {job.op}) has been in state {int(job.state)} "
            f"for {now - job.created_at:.0f}s, past its deadline of {deadline_s(job.kind):.0f}s",
        )
        for job in sorted(stuck, key=lambda j: j.created_at)
    ]
    return found or [Finding(True, f"jobs: none of {len(jobs)} is stuck past its deadline")]


async def dead_letters(bus: Bus) -> Finding:
    """Dead letters waiting in `TY_DEAD`, by consumer."""
    try:
        info = await bus.js.stream_info(subjects.DEAD.name, subjects_filter=subjects.DEAD_ALL)
    except js_errors.NotFoundError:
        return Finding(True, "dead letters: none (no TY_DEAD stream yet)")
    if not info.state.messages:
        return Finding(True, "dead letters: none")
    by = ", ".join(f"{s.rsplit('.', 1)[-1]}: {n}" for s, n in sorted((info.state.subjects or {}).items()))
    return Finding(False, f"dead letters: {info.state.messages} waiting ({by}); see `tingyu dead ls`")


async def backlog(bus: Bus, spec: subjects.ConsumerSpec[Any]) -> int | None:
    """Messages a consumer has not finished (pending + unacknowledged); None when it does not exist."""
    try:
        info = await bus.js.consumer_info(spec.stream.name, spec.durable)
    except js_errors.NotFoundError:
        return None
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)


async def backlogs(bus: Bus, interval_s: float) -> list[Finding]:
    """Consumers whose backlog grew between two looks, or that do not exist."""
    first = {spec.durable: await backlog(bus, spec) for spec in subjects.ALL_CONSUMERS}
    await asyncio.sleep(interval_s)
    found = []
    for spec in subjects.ALL_CONSUMERS:
        before, after = first[spec.durable], await backlog(bus, spec)
        if before is None or after is None:
            found.append(Finding(False, f"consumer {spec.durable}: missing (has its service run?)"))
        elif after > before:
            found.append(
                Finding(
                    False, f"consumer {spec.durable}: backlog grows, {before} -> {after} in {interval_s:g}s"
                )
            )
        else:
            found.append(Finding(True, f"consumer {spec.durable}: backlog {after}"))
    return found
