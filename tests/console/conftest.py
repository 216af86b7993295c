"""The console in Debian's headless Chromium (selenium with chromedriver; nothing is downloaded),
against the session's platform. Screenshots of every page are kept under var/screenshots (or
TINGYU_SCREENSHOTS) and their folder is printed at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import ADMIN_TOKEN
from tingyu.cli.launcher import CONSOLE, Platform, build_console

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--window-size=1400,1000",
)
TOKEN = ADMIN_TOKEN  # the platform checks tokens: the console signs in with the bootstrap admin token


@pytest.fixture(scope="session")
def console_built() -> Path:
    """console/dist, built with npm from the lockfile when missing; skipped without node or Chromium."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make deps installs them)")
    outcome = build_console()
    if not (CONSOLE / "dist" / "index.html").is_file():
        pytest.skip(outcome)
    return CONSOLE / "dist"


@pytest.fixture(scope="session")
def screenshots() -> Iterator[Path]:
    folder = Path(os.environ.get("TINGYU_SCREENSHOTS", CONSOLE.parent / "var" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    print(f"\nconsole screenshots: {folder}")


@pytest.fixture(scope="session")
def browser(console_built: Path) -> Iterator[WebDriver]:
    profile = tempfile.mkdtemp(prefix="tingyu-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def signed_in(browser: WebDriver, platform: Platform) -> WebDriver:
    """The console opened and signed in with a token (kept in sessionStorage only)."""
    browser.get(f"{platform.config.api_url}/console/")
    wait(browser).until(lambda d: d.find_element(By.ID, "token"))
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "signin").click()
    wait(browser).until(lambda d: d.find_elements(By.ID, "page-fleet"))
    return browser


def wait(browser: WebDriver, timeout: float = 60) -> WebDriverWait[WebDriver]:
    # Pages redraw while polling: an element read as it is replaced is read again.
    return WebDriverWait(
        browser, timeout, poll_frequency=0.2, ignored_exceptions=[StaleElementReferenceException]
    )


def open_page(browser: WebDriver, name: str) -> None:
    browser.find_element(By.ID, f"nav-{name}").click()
    wait(browser).until(lambda d: d.find_elements(By.ID, f"page-{name}"))
