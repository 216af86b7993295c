"""The console in a real browser against the real platform: sign in, the fleet, a container and its
job, a rollout's bar, an upload with progress, and the bandwidth chart's 95th-percentile line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.console.conftest import TOKEN, open_page, wait
from tests.e2e.test_containers_e2e import body, finished, inspect
from tests.e2e.test_images import saved_tar
from tests.support import FAST_ENV, build_busybox, eventually, unique
from tingyu.cli.launcher import Platform
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.models.metering import Sample, SampleBatch

pytestmark = pytest.mark.console


def fill(browser: WebDriver, fields: dict[str, str]) -> None:
    for field, value in fields.items():
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)


def job_state(browser: WebDriver, jobid: str) -> str:
    rows = browser.find_elements(By.CSS_SELECTOR, f'#jobs tr[data-jobid="{jobid}"]')
    return rows[0].get_attribute("data-state") or "" if rows else ""


def click(browser: WebDriver, css: str) -> bool:
    """Click the element `css` names (inside a wait: a redraw between finding and clicking is retried)."""
    browser.find_element(By.CSS_SELECTOR, css).click()
    return True


def log_lines(browser: WebDriver, jobid: str, until: str) -> list[str] | None:
    """The lines the job view shows under `jobid`, once one of them holds `until`."""
    shown = browser.find_elements(By.CSS_SELECTOR, f'#jobs tr[data-log-of="{jobid}"] ol.loglines li')
    lines = [li.text for li in shown]
    return lines if any(until in line for line in lines) else None


async def test_sign_in_keeps_the_token_in_the_session_and_shows_this_machine_ready(
    signed_in: WebDriver, node_uuid: str, screenshots: Path
) -> None:
    browser = signed_in
    assert browser.execute_script("return sessionStorage.getItem('tingyu.token')") == TOKEN
    assert browser.execute_script("return JSON.stringify(localStorage)") == "{}"
    row = f'#fleet-list tr[data-uuid="{node_uuid}"]'
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
    assert browser.find_element(By.CSS_SELECTOR, f"{row} td.ok").text == "Ready"
    assert FAST_ENV["TINGYU_AGENT_AREA"] in browser.find_element(By.ID, "fleet-matrix").text
    browser.find_element(By.ID, "fleet-search").send_keys(node_uuid[-12:])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#fleet-list tr[data-uuid]")) == 1
    browser.find_element(By.CSS_SELECTOR, row).click()
    wait(browser).until(lambda d: node_uuid in d.find_element(By.ID, "machine-detail").text)
    assert browser.find_element(By.ID, "nav-fleet").text == "节点"
    browser.find_element(By.ID, "lang").click()
    wait(browser).until(lambda d: d.find_element(By.ID, "nav-fleet").text == "Fleet")
    browser.find_element(By.ID, "lang").click()
    wait(browser).until(lambda d: d.find_element(By.ID, "nav-fleet").text == "节点")
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
    browser.save_screenshot(str(screenshots / "fleet.png"))


async def test_a_container_created_in_the_console_reaches_success(
    *,
    signed_in: WebDriver,
    api: httpx.AsyncClient,
    node_uuid: str,
    busybox_ref: tuple[str, str],
    docker_client: docker.DockerClient,
    screenshots: Path,
) -> None:
    browser, name = signed_in, unique("con")
    open_page(browser, "deployments")
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#uuid option[value="{node_uuid}"]'))
    Select(browser.find_element(By.ID, "uuid")).select_by_value(node_uuid)
    fill(browser, {"deploymentname": name, "image": busybox_ref[0], "imageversion": busybox_ref[1]})
    fill(browser, {"limitsmemory": "64"})
    try:
        browser.find_element(By.ID, "create").click()
        wait(browser).until(lambda d: name in d.find_element(By.ID, "jobs").text)
        jobid = browser.find_element(By.CSS_SELECTOR, "#jobs tr[data-jobid]").get_attribute("data-jobid")
        assert jobid
        wait(browser, 120).until(lambda d: job_state(d, jobid) in ("3", "4"))
        assert job_state(browser, jobid) == "3", browser.find_element(By.ID, "jobs").text
        assert docker_client.containers.get(name).status == "running"
        # Under its state, the job view shows the job's log lines, up to the last one once it is final.
        lines = wait(browser).until(lambda d: log_lines(d, jobid, f"job {jobid} succeeded"))
        assert any(" api INFO " in line and f"job {jobid} queued" in line for line in lines), lines
        assert any(" deployer INFO " in line for line in lines), lines
        # Its button folds the lines away and opens them again (read afresh).
        toggle = f'#jobs button[data-log-toggle="{jobid}"]'
        wait(browser).until(lambda d: click(d, toggle))
        wait(browser).until(
            lambda d: not d.find_elements(By.CSS_SELECTOR, f'#jobs tr[data-log-of="{jobid}"]')
        )
        wait(browser).until(lambda d: click(d, toggle))
        wait(browser).until(lambda d: log_lines(d, jobid, f"job {jobid} succeeded"))
        wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#containers tr[data-name="{name}"]'))
        # The same name again: the API's refusal, with its code, is what the page shows.
        browser.find_element(By.ID, "create").click()
        wait(browser).until(lambda d: "500" in d.find_element(By.ID, "form-status").text)
        browser.save_screenshot(str(screenshots / "deployments.png"))
    finally:
        await api.delete("/container/delete", params={"name": name})


def rollout_card(browser: WebDriver, image: str) -> WebElement:
    key = f"{FAST_ENV['TINGYU_AGENT_AREA']}|{FAST_ENV['TINGYU_AGENT_OPERATOR']}|{image}"
    return browser.find_element(By.CSS_SELECTOR, f'.rollout[data-key="{key}"]')


def figure(card: WebElement, key: str) -> int:
    found = card.find_elements(By.CSS_SELECTOR, f'.figure[data-key="{key}"]')
    return int(found[0].get_attribute("data-value") or 0) if found else -1


def bar_value(card: WebElement) -> int:
    return int(card.find_element(By.CSS_SELECTOR, ".bar").get_attribute("aria-valuenow") or 0)


def start_rollout(browser: WebDriver, image: str, version: str) -> str:
    """Starts a rollout from the form; answers its job id, as the page states it."""
    fill(
        browser,
        {
            "area": FAST_ENV["TINGYU_AGENT_AREA"],
            "operator": FAST_ENV["TINGYU_AGENT_OPERATOR"],
            "image": image,
            "imageversion": version,
            "percent": "100",
        },
    )
    before = browser.find_element(By.ID, "rollout-status").text
    browser.find_element(By.ID, "start-rollout").click()
    wait(browser).until(lambda d: d.find_element(By.ID, "rollout-status").text not in ("", before))
    stated = browser.find_element(By.ID, "rollout-status").text
    assert stated.startswith("success: "), stated
    return stated.removeprefix("success: ")


def running_run(browser: WebDriver, image: str, jobid: str) -> bool:
    """The card shows the run of `jobid` (not the image's previous run) with upgrades in flight."""
    card = rollout_card(browser, image)  # until it is drawn, the wait reads it again
    return bool(
        jobid in (card.get_attribute("data-jobids") or "").split(",")
        and card.get_attribute("data-status") == "running"
        and figure(card, "inflight") > 0
    )


def at_version(client: docker.DockerClient, names: list[str], version: str) -> int:
    return sum(inspect(client, n)["Config"]["Image"].endswith(f":{version}") for n in names)


def pause_and_hold(browser: WebDriver, image: str, names: list[str], client: docker.DockerClient) -> int:
    """Pause the running run: its upgrades in flight finish, then the bar stops, poll after poll;
    answers where it stopped."""
    card = rollout_card(browser, image)
    assert card.find_element(By.CSS_SELECTOR, ".rollout-pause").text == "暂停"
    card.find_element(By.CSS_SELECTOR, ".rollout-pause").click()
    wait(browser).until(lambda d: rollout_card(d, image).get_attribute("data-status") == "paused")
    assert rollout_card(browser, image).find_element(By.CSS_SELECTOR, ".rollout-status").text == "已暂停"
    wait(browser).until(lambda d: figure(rollout_card(d, image), "inflight") == 0)
    card = rollout_card(browser, image)
    held, polls = bar_value(card), int(card.get_attribute("data-polls") or 0)
    assert figure(card, "pending") > 0, card.text
    wait(browser).until(lambda d: int(rollout_card(d, image).get_attribute("data-polls") or 0) >= polls + 3)
    card = rollout_card(browser, image)
    assert (bar_value(card), card.get_attribute("data-status")) == (held, "paused"), card.text
    assert at_version(client, names, "2") == held < len(names)
    return held


def resume_to_the_end(browser: WebDriver, image: str, names: list[str], held: int) -> None:
    """Resume: the run carries on to success, and the bar only ever grows until it is full."""
    rollout_card(browser, image).find_element(By.CSS_SELECTOR, ".rollout-resume").click()
    seen: list[int] = []

    def ended(d: WebDriver) -> bool:
        card = rollout_card(d, image)
        # The status first: a bar read after it is of the same poll or a later one (the page may
        # redraw between the two reads, and an end seen with the bar of the poll before is not full).
        status = card.get_attribute("data-status")
        seen.append(bar_value(card))
        return status in ("succeeded", "failed", "aborted")

    wait(browser, 120).until(ended)
    card = rollout_card(browser, image)
    assert card.get_attribute("data-status") == "succeeded", card.text
    bar = card.find_element(By.CSS_SELECTOR, ".bar")
    assert bar.get_attribute("aria-valuemax") == str(len(names))
    assert seen[-1] == len(names), seen
    assert seen == sorted(seen), seen
    assert seen[0] >= held, seen

    def full(_: WebDriver) -> bool:
        width = bar.find_element(By.CSS_SELECTOR, ".part.updated").value_of_css_property("width")
        return bool(float(width.removesuffix("px")) > 0.95 * bar.size["width"])

    wait(browser).until(full)  # the bar's width eases to its new value


async def test_a_rollout_in_the_console_moves_its_bar_pauses_resumes_and_aborts(
    *,
    signed_in: WebDriver,
    api: httpx.AsyncClient,
    node_uuid: str,
    platform: Platform,
    docker_client: docker.DockerClient,
    screenshots: Path,
) -> None:
    browser = signed_in
    repository = f"{platform.config.registry}/tytest/{unique('roll')}"
    for version in ("1", "2", "3"):
        build_busybox(docker_client, repository, version)
        docker_client.images.push(repository, tag=version)
    # More containers than upgrades in flight at once (2 in tests): a pause finds some pending.
    names = [unique("rol") for _ in range(6)]
    items = [body(node_uuid, n, (repository, "1")) for n in names]
    for item in (await api.post("/container/create", json=items)).json()["data"]:
        assert (await finished(api, item["jobid"]))["state"] == 3, item
    try:
        open_page(browser, "rollouts")
        first = start_rollout(browser, repository, "2")
        wait(browser, 30).until(lambda d: running_run(d, repository, first))
        held = pause_and_hold(browser, repository, names, docker_client)
        browser.save_screenshot(str(screenshots / "rollouts-paused.png"))
        resume_to_the_end(browser, repository, names, held)
        assert at_version(docker_client, names, "2") == len(names)
        browser.save_screenshot(str(screenshots / "rollouts.png"))

        # A finished run cannot be paused: the API says so, and the page shows its code and message.
        rollout_card(browser, repository).find_element(By.CSS_SELECTOR, ".rollout-pause").click()
        answer = (By.CSS_SELECTOR, ".rollout-answer")
        wait(browser).until(lambda d: "TY0003" in rollout_card(d, repository).find_element(*answer).text)

        # A new run to version 3, aborted while it runs: the page says aborted and its job fails.
        second = start_rollout(browser, repository, "3")
        wait(browser, 30).until(lambda d: running_run(d, repository, second))
        rollout_card(browser, repository).find_element(By.CSS_SELECTOR, ".rollout-abort").click()
        browser.switch_to.alert.accept()
        wait(browser).until(lambda d: rollout_card(d, repository).get_attribute("data-status") == "aborted")
        assert (
            rollout_card(browser, repository).find_element(By.CSS_SELECTOR, ".rollout-status").text
            == "已中止"
        )
        job = await finished(api, second)
        assert job["state"] == 4, job
        assert "aborted by request" in job["message"], job

        # Its pending members were never issued: their containers stay at version 2. The card is
        # read through the wait, which reads it again when the page redraws it meanwhile.
        def pending_members(driver: WebDriver) -> tuple[list[str], int]:
            card = rollout_card(driver, repository)
            rows = card.find_elements(By.CSS_SELECTOR, 'table.members tr[data-state="pending"]')
            return [row.get_attribute("data-name") or "" for row in rows], figure(card, "pending")

        pending, counted = wait(browser).until(pending_members)
        assert len(pending) == counted > 0, rollout_card(browser, repository).text
        assert at_version(docker_client, pending, "2") == len(pending)
        browser.save_screenshot(str(screenshots / "rollouts-aborted.png"))
    finally:
        await api.delete("/container/delete", params={"name": ",".join(names)})


async def test_an_image_uploaded_in_the_console_shows_progress_and_lands_in_the_catalog(
    signed_in: WebDriver, docker_client: docker.DockerClient, tmp_path: Path, screenshots: Path
) -> None:
    browser, name = signed_in, unique("up")
    tar = saved_tar(docker_client, tmp_path, unique("src"))
    open_page(browser, "images")
    fill(browser, {"image_name": name, "version": "v1"})
    browser.find_element(By.ID, "file").send_keys(str(tar))
    browser.find_element(By.ID, "upload").click()
    wait(browser).until(lambda d: d.find_element(By.ID, "upload-progress").get_attribute("value") == "100")
    assert "%" in browser.find_element(By.ID, "upload-percent").text
    wait(browser).until(lambda d: name in d.find_element(By.ID, "jobs").text)
    jobid = browser.find_element(By.CSS_SELECTOR, "#jobs tr[data-jobid]").get_attribute("data-jobid")
    assert jobid
    wait(browser, 120).until(lambda d: job_state(d, jobid) in ("3", "4"))
    assert job_state(browser, jobid) == "3", browser.find_element(By.ID, "jobs").text
    row = f'#catalog tr[data-image="{name}"][data-version="v1"]'
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
    browser.save_screenshot(str(screenshots / "images.png"))


async def publish_samples(bus: Bus, image: str) -> None:
    """An hour of a machine's container traffic, one sample per 5 minutes, uneven on purpose."""
    node = f"tingyu-{unique('')[1:]}{'0' * 22}"
    now = time.time()
    samples = [
        Sample(
            sample_id=f"{node}-{i}",
            node_uuid=node,
            deploymentname="web",
            image=image,
            version="v1",
            ts=now - 300 * (12 - i),
            interval_s=10,
            tx_bytes=1_000_000 * (1 + (i * 7) % 12),
            rx_bytes=250_000 * (1 + (i * 5) % 12),
        )
        for i in range(12)
    ]
    batch = SampleBatch(batch_id=unique("b"), node_uuid=node, samples=samples)
    await bus.publish(subjects.samples(node), batch, msg_id=batch.batch_id)


async def test_the_bandwidth_chart_draws_the_api_95th_percentile(
    signed_in: WebDriver, api: httpx.AsyncClient, bus: Bus, screenshots: Path
) -> None:
    browser, image = signed_in, unique("bw")
    await publish_samples(bus, image)

    async def stored() -> dict[str, Any] | None:
        params = {
            "startDate": timefmt.to_wire(time.time() - 7200),
            "endDate": timefmt.to_wire(time.time()),
            "imageVersion": f"{image}:v1",
        }
        answer: dict[str, Any] = (await api.get("/info/bandWith/getByImageVersion", params=params)).json()
        # Stored: the one batch is in (empty 5-minute buckets count as points too, so ask for traffic).
        return answer if answer["code"] == 200 and answer["summary"]["peakUpbps"] > 0 else None

    await eventually(stored, timeout=60)
    open_page(browser, "bandwidth")
    Select(browser.find_element(By.ID, "scope")).select_by_value("version")
    fill(browser, {"scope-image": f"{image}:v1"})
    browser.find_element(By.ID, "last-6h").click()
    shown = f"version:{image}:v1"
    page = (By.ID, "page-bandwidth")
    dates = {key: browser.find_element(By.ID, key).get_attribute("value") for key in ("startDate", "endDate")}
    answered = f"{dates['startDate']}|{dates['endDate']}"
    # The charts answer this very question (an earlier one, for other dates, may have been shown first).
    wait(browser).until(
        lambda d: (
            d.find_element(*page).get_attribute("data-shown") == shown
            and d.find_element(*page).get_attribute("data-range") == answered
        )
    )
    answer = (
        await api.get("/info/bandWith/getByImageVersion", params={**dates, "imageVersion": f"{image}:v1"})
    ).json()
    summary = answer["summary"]
    marks = browser.execute_script(
        "return window.tingyuCharts.bandwidth.getOption().series.map("
        "s => Object.fromEntries(s.markLine.data.map(m => [m.name, m.yAxis])))"
    )
    up, down = marks
    assert summary["p95Upbps"] > 0
    assert up["P95"] == pytest.approx(summary["p95Upbps"])
    assert down["P95"] == pytest.approx(summary["p95Downbps"])
    assert max(up.values()) == pytest.approx(summary["peakUpbps"])
    assert summary["p95Upbps"] < summary["peakUpbps"]  # uneven traffic: two different lines
    stated = browser.find_element(By.ID, "p95-up").get_attribute("data-value")
    assert float(stated or 0) == pytest.approx(summary["p95Upbps"])
    points = browser.execute_script("return window.tingyuCharts.bandwidth.getOption().series[0].data.length")
    assert points == len(answer["info"])
    browser.save_screenshot(str(screenshots / "bandwidth.png"))
