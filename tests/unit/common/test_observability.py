"""JSON log lines with their ids, the AsyncAPI document kept complete, and route labels of metrics."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tingyu.api.metrics import UNMATCHED, route_of
from tingyu.common import asyncapi, logs, subjects

ROOT = Path(__file__).resolve().parents[3]


def test_json_logs_carry_service_level_and_the_ids_of_the_context(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("deployer", "INFO", "json")
    try:
        token = logs.job_id.set("job-1")
        logging.getLogger("tingyu.test").info("moved %s", "it", extra={"uuid": "tingyu-ab"})
        logs.job_id.reset(token)
        logging.getLogger("tingyu.test").warning("plain")
    finally:
        logs.configure("test", "WARNING", "text")
    first, second = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert first["service"] == "deployer"
    assert (first["level"], first["message"]) == ("INFO", "moved it")
    assert (first["job_id"], first["uuid"]) == ("job-1", "tingyu-ab")
    assert "job_id" not in second


def test_docs_events_md_is_the_generated_page() -> None:
    assert (ROOT / "docs" / "events.md").read_text() == asyncapi.markdown() + "\n", (
        "regenerate: python -m tingyu.common.asyncapi --markdown > docs/events.md"
    )


def test_the_asyncapi_document_has_every_subject_bucket_and_consumer() -> None:
    doc = asyncapi.document()
    addresses = {channel["address"] for channel in doc["channels"].values()}
    for family in asyncapi.families().values():
        assert f"{family.prefix}.{{id}}" in addresses
    for bucket in subjects.ALL_BUCKETS:
        assert f"$KV.{bucket.name}.{{key}}" in addresses
    assert {spec.durable for spec in subjects.ALL_CONSUMERS} <= set(doc["operations"])
    for message in doc["components"]["messages"].values():
        assert message["payload"]["$ref"].rsplit("/", 1)[-1] in doc["components"]["schemas"]


class Route:
    def __init__(self, path: str) -> None:
        self.path = path


@pytest.mark.parametrize(
    ("scope", "label"),
    [
        ({"route": Route("/task/status"), "path": "/tingyu/task/status"}, "/tingyu/task/status"),
        ({"route": Route("/metrics"), "path": "/metrics"}, "/metrics"),
        ({"path": "/tingyu/console/assets/x.js"}, "/tingyu/console/"),
        ({"path": "/tingyu/nothing/here"}, UNMATCHED),
    ],
)
def test_requests_are_labelled_by_route_template(scope: dict[str, object], label: str) -> None:
    assert route_of(scope, "/tingyu") == label


def defined_metrics() -> set[str]:
    from prometheus_client import REGISTRY

    from tingyu.common import metrics  # noqa: F401 - registers them

    return {family.name for family in REGISTRY.collect() if family.name.startswith("tingyu_")}


@pytest.mark.parametrize(
    "path", ["deploy/prometheus/tingyu-alerts.yml", "deploy/grafana/tingyu-dashboard.json", "docs/metrics.md"]
)
def test_alerts_dashboard_and_docs_read_only_series_that_exist(path: str) -> None:
    import re

    known = defined_metrics()
    used = {
        re.sub(r"_(bucket|count|sum|total)$", "", name)
        for name in re.findall(r"tingyu_[a-z_]+", (ROOT / path).read_text())
    }
    assert used, path
    assert used <= {name.removesuffix("_total") for name in known}, used - known


def test_an_items_wait_is_counted_from_when_it_was_sent_and_other_items_are_not() -> None:
    import dataclasses

    from prometheus_client import REGISTRY

    from tests.support.factories import command
    from tingyu.common import subjects, timefmt
    from tingyu.common.bus.consumers import observe_wait
    from tingyu.common.models.containers import ContainerOp, NodeReport

    commands = dataclasses.replace(subjects.DEPLOYER_COMMANDS, durable="unit-wait-commands")
    reports = dataclasses.replace(subjects.DEPLOYER_REPORTS, durable="unit-wait-reports")
    unsent = dataclasses.replace(subjects.DEPLOYER_DEADLINES, durable="unit-wait-deadlines")

    def observed(spec: subjects.ConsumerSpec[Any], suffix: str) -> float:
        labels = {"consumer": spec.durable}
        return REGISTRY.get_sample_value(f"tingyu_command_wait_seconds_{suffix}", labels) or 0.0

    accepted = command(ContainerOp.START, "web").model_copy(update={"issued_at": timefmt.now() - 3.0})
    observe_wait(commands, accepted)
    assert observed(commands, "count") == 1
    assert 3.0 <= observed(commands, "sum") < 10.0
    made = NodeReport(node_uuid="unit-wait-machine", reported_at=timefmt.now() - 7.0)
    observe_wait(reports, made)
    assert 7.0 <= observed(reports, "sum") < 14.0
    assert subjects.DEPLOYER_DEADLINES.sent_at is None  # a job's timer is due, not sent: not counted
    observe_wait(unsent, accepted)
    assert observed(unsent, "count") == 0
