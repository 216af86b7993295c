"""A property-based fuzz of the whole OpenAPI (schemathesis, stateless) against the real platform.

Every operation gets a bounded number of generated requests, valid and invalid by its schema. Each
must be answered within a timeout, never with a 5xx, every JSON answer in the contract's envelope
(`msg` and `code`), the file download either its bytes (not JSON) or the contract's error; and the
platform is alive afterwards. The requests carry the `api` fixture's headers, so they pass the same
gate as every other test.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode

from tests.abuse.conftest import assert_alive
from tests.integration.api.test_containers_api import item
from tests.support import unique
from tingyu.cli.launcher import Platform

pytestmark = pytest.mark.e2e

EXAMPLES = 12  # per operation and mode; the whole fuzz stays well under a minute here
TIMEOUT_S = 15.0
DOWNLOAD = "/tingyu/file/content/{job_id}"
NOT_FUZZED = {"/tingyu/docs", "/tingyu/openapi.json"}


def problems(path: str, response: schemathesis.Response) -> list[str]:
    """What is wrong with one answer (empty when it is right)."""
    found = []
    if response.status_code >= 500:
        found.append(f"HTTP {response.status_code}")
    media = (response.headers.get("content-type") or [""])[0]
    if path == DOWNLOAD and response.status_code == 200:
        if media.startswith("application/json"):
            found.append("the file download answered JSON")
        return found
    if not media.startswith("application/json"):
        found.append(f"answered {media or 'no content type'}, not JSON")
        return found
    try:
        body: Any = response.json()
    except ValueError:
        return [*found, "answered invalid JSON"]
    if not isinstance(body, dict) or not {"msg", "code"} <= set(body):
        found.append(f"answered no envelope: {str(body)[:200]}")
    return found


def fuzz(
    operation: Any, base_url: str, headers: dict[str, str], failures: list[str], answers: list[int]
) -> None:
    """Run the operation's generated cases; note every wrong answer (without shrinking)."""
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

    @hypothesis.settings(
        max_examples=EXAMPLES * 2,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        try:
            response = case.call(base_url=base_url, headers=headers, timeout=TIMEOUT_S)
        except requests.Timeout:
            failures.append(f"{operation.label}: no answer in {TIMEOUT_S:g}s to {case.as_curl_command()}")
            return
        except requests.ConnectionError as exc:
            failures.append(f"{operation.label}: connection failed ({exc}) on {case.as_curl_command()}")
            return
        answers.append(response.status_code)
        for problem in problems(operation.path, response):
            failures.append(f"{operation.label}: {problem} <- {case.as_curl_command()}")

    run()


# The generation is CPU work: bounded by EXAMPLES, not by time (a hang shows as TIMEOUT_S per request),
# so the whole-test limit only has to outlast a machine shared with other suites.
@pytest.mark.timeout(900)
async def test_every_operation_answers_the_envelope_without_5xx_or_hang(
    api: httpx.AsyncClient, platform: Platform, node_uuid: str
) -> None:
    spec = (await api.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(spec)
    base_url = api.base_url.copy_with(path="").__str__().rstrip("/")
    headers = {k: v for k, v in api.headers.items() if k.lower() not in ("host", "content-length")}
    failures: list[str] = []
    answers: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations() if result.ok().path not in NOT_FUZZED]
    assert len(operations) >= 28

    for operation in operations:
        await asyncio.to_thread(fuzz, operation, base_url, headers, failures, answers)
    assert not failures, "\n".join(failures[:40])
    assert len(answers) >= len(operations) * EXAMPLES  # the fuzz did run

    await assert_alive(api, node_uuid)
    name = unique("fz")
    created = (await api.post("/container/create", json=[item(node_uuid, name)])).json()
    assert created["code"] == 200, created
    assert created["data"][0]["code"] == 200, created
    await api.delete("/container/delete", params={"name": name})
