"""Every service's /metrics, read with Prometheus' own text parser, has its `tingyu_…` series, and
they move with what the platform does: a container job, an image upload, metering samples."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import docker
import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_containers_e2e import body, create
from tests.e2e.test_images import pushed, saved_tar
from tests.support import bearer, eventually, unique
from tingyu.cli.launcher import Platform
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.metering import Sample, SampleBatch

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
SERVICES = ("api", "nodes", "deployer", "imager", "metering", "agent")
DEFAULT_PREFIXES = ("process_", "python_")  # prometheus-client's own collectors


async def scrape(url: str) -> Series:
    # The API's /metrics needs a token (a viewer's is enough); the other services' ports are private.
    async with httpx.AsyncClient(timeout=10, headers=bearer()) as client:
        text = (await client.get(url)).text
    series: Series = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith(("tingyu_", *DEFAULT_PREFIXES)), family.name
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float:
    """The sample `name` with exactly these labels; -1 when absent."""
    return series.get((name, frozenset(labels.items())), -1.0)


def has(series: Series, name: str) -> bool:
    return any(key[0] == name for key in series)


async def sample_batch(bus: Bus) -> None:
    node = f"tingyu-{unique('')[1:]}{'0' * 22}"
    samples = [
        Sample(sample_id=f"{node}-{i}", node_uuid=node, ts=time.time() - 10 * i, interval_s=10, tx_bytes=10)
        for i in range(5)
    ]
    batch = SampleBatch(batch_id=unique("b"), node_uuid=node, samples=samples)
    await bus.publish(subjects.samples(node), batch, msg_id=batch.batch_id)


async def test_every_service_exposes_tingyu_series_that_move(
    *,
    api: httpx.AsyncClient,
    bus: Bus,
    platform: Platform,
    node_uuid: str,
    busybox_ref: tuple[str, str],
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    urls = {name: platform.config.metrics_url(name) for name in SERVICES}
    before = {name: await eventually(lambda url=url: scrape(url), timeout=30) for name, url in urls.items()}  # type: ignore[misc]
    name = unique("met")
    try:
        assert (await create(api, body(node_uuid, name, busybox_ref)))["state"] == 3
        await pushed(api, saved_tar(docker_client, tmp_path, unique("src")), unique("mimg"), "v1")
        await sample_batch(bus)

        def grew(service: str, metric: str, **labels: str) -> Callable[[], object]:
            async def check() -> bool:
                now = value(await scrape(urls[service]), metric, **labels)
                return now > max(value(before[service], metric, **labels), 0)

            check.__doc__ = f"{service}: {metric} {labels}"
            return check

        moved = [
            grew("api", "tingyu_api_requests_total", route="/tingyu/container/create", code="200"),
            grew("api", "tingyu_api_request_seconds_count", route="/tingyu/task/status", code="200"),
            grew("api", "tingyu_commands_accepted_total", kind="container"),
            grew("api", "tingyu_commands_accepted_total", kind="image"),
            grew("api", "tingyu_jobs_total", kind="container", state="queued"),
            grew("api", "tingyu_upload_bytes_total"),
            grew("api", "tingyu_upload_seconds_count"),
            grew("deployer", "tingyu_jobs_total", kind="container", state="succeeded"),
            grew("deployer", "tingyu_consumer_messages_total", consumer="deployer-commands", outcome="acked"),
            grew("deployer", "tingyu_command_wait_seconds_count", consumer="deployer-commands"),
            grew("deployer", "tingyu_command_wait_seconds_count", consumer="deployer-observed"),
            grew("imager", "tingyu_command_wait_seconds_count", consumer="imager-commands"),
            grew("deployer", "tingyu_store_seconds_count", bucket="ty_desired", op="create"),
            grew("deployer", "tingyu_store_seconds_count", bucket="ty_jobs", op="update"),
            grew("api", "tingyu_store_seconds_count", bucket="ty_jobs", op="create"),
            grew("imager", "tingyu_jobs_total", kind="image", state="succeeded"),
            grew("imager", "tingyu_consumer_messages_total", consumer="imager-commands", outcome="acked"),
            grew("nodes", "tingyu_heartbeats_total"),
            grew("metering", "tingyu_metering_samples_total", outcome="ingested"),
            grew("metering", "tingyu_metering_insert_seconds_count"),
            grew("api", "tingyu_joblog_lines_total"),
            grew("deployer", "tingyu_joblog_lines_total"),
            grew("imager", "tingyu_joblog_lines_total"),
        ]
        for check in moved:
            try:
                await eventually(check, timeout=30)  # type: ignore[arg-type]
            except AssertionError as exc:
                raise AssertionError(f"{check.__doc__} did not grow: {exc}") from exc
    finally:
        await api.delete("/container/delete", params={"name": name})

    after = {service: await scrape(url) for service, url in urls.items()}
    assert value(after["nodes"], "tingyu_machines", status="Ready") >= 1
    assert has(after["deployer"], "tingyu_rollouts_active")
    assert has(after["metering"], "tingyu_metering_lag_seconds")
    for consumer in ("deployer-commands", "deployer-observed", "deployer-rollouts"):
        assert value(after["deployer"], "tingyu_consumer_pending", consumer=consumer) >= 0
        assert value(after["deployer"], "tingyu_consumer_redelivered_total", consumer=consumer) >= 0
    assert value(after["metering"], "tingyu_consumer_pending", consumer="metering-samples") >= 0
    for service in SERVICES:
        assert value(after[service], "tingyu_nats_reconnects_total") >= 0, service
        for reason in ("full", "nats"):  # no job log line was lost
            assert value(after[service], "tingyu_joblog_dropped_total", reason=reason) <= 0, service
    assert value(after["agent"], "tingyu_joblog_lines_total") <= 0  # the agent sends none


async def test_the_api_serves_the_asyncapi_document(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/asyncapi.json")).json()
    assert doc["asyncapi"].startswith("3.")
    assert doc["channels"]["ty_jobs"]["address"] == "$KV.ty_jobs.{key}"
    assert "Job" in doc["components"]["schemas"]


async def test_a_request_id_is_echoed_and_a_bad_one_replaced(api: httpx.AsyncClient) -> None:
    answer = await api.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert answer.headers["x-request-id"] == "abc-123"
    answer = await api.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert answer.headers["x-request-id"] != "bad id\twith spaces"
    assert len(answer.headers["x-request-id"]) == 16
    await asyncio.sleep(0)
