"""Headless Chromium from the machine's packages (Debian's `chromium` and `chromium-driver`),
driven by Selenium, and the checks every page must pass: no console error, no failed request.

Failed requests come from Chromium's performance log (the CDP `Network` events that
`goog:loggingPrefs` records): a response with status >= 400, or a load that failed for a reason
other than the page going away (an EventSource that navigation closes is `canceled`, not failed).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

WINDOW = (1400, 1000)
CHROMIUM_NAMES = ("chromium", "chromium-browser")


@dataclass(frozen=True)
class ChromiumPaths:
    browser: str
    driver: str


def find_chromium() -> ChromiumPaths | None:
    """Debian's chromium and its chromedriver, or None when either is missing."""
    browser = next((p for p in (shutil.which(n) for n in CHROMIUM_NAMES) if p), None)
    driver = shutil.which("chromedriver")
    return ChromiumPaths(browser, driver) if browser and driver else None


def require_chromium() -> ChromiumPaths:
    """Skips the test where chromium is not installed, except in CI (CI set), where that is a
    failure: `.ci/run` installs it, so a CI without it would pass by testing nothing."""
    found = find_chromium()
    if found is not None:
        return found
    reason = ("chromium and chromedriver are not installed (apt-get install chromium chromium-driver, "
              "or run .ci/run which installs them)")
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}", pytrace=False)
    pytest.skip(reason)


def start_chrome(paths: ChromiumPaths, log_dir: Path) -> webdriver.Chrome:
    """A headless Chromium at 1400x1000 that records console messages and network events."""
    options = webdriver.ChromeOptions()
    options.binary_location = paths.browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(paths.driver, log_output=str(log_dir / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    return driver


@dataclass
class PageProblems:
    """What the browser logged since the last look: console errors and failed requests."""

    console_errors: list[str]
    failed_requests: list[str]

    def __bool__(self) -> bool:
        return bool(self.console_errors or self.failed_requests)

    def __str__(self) -> str:
        lines = [f"console: {e}" for e in self.console_errors] + [f"request: {r}" for r in self.failed_requests]
        return "\n".join(lines)


def collect_problems(driver: webdriver.Chrome) -> PageProblems:
    """Drains the browser and performance logs and returns the errors in them."""
    return _drain(driver)[0]


class BrowserLog:
    """What the browser logged over several reads (each read drains Chromium's buffers): the
    problems and every URL requested, e.g. to wait until a page opened its event stream."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver
        self.problems = PageProblems([], [])
        self.urls: list[str] = []

    def read(self) -> BrowserLog:
        problems, urls = _drain(self.driver)
        self.problems.console_errors += problems.console_errors
        self.problems.failed_requests += problems.failed_requests
        self.urls += urls
        return self

    def requested(self, fragment: str) -> bool:
        return any(fragment in url for url in self.urls)


def _drain(driver: webdriver.Chrome) -> tuple[PageProblems, list[str]]:
    console = [f"{e.get('source', '')}: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    failed = []
    urls: dict[str, str] = {}
    for entry in driver.get_log("performance"):
        message: dict[str, Any] = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.responseReceived":
            response = params["response"]
            if response["status"] >= 400:
                failed.append(f"{response['status']} {response['url']}")
        elif message["method"] == "Network.loadingFailed" and not params.get("canceled"):
            failed.append(f"{params.get('errorText')} {urls.get(params['requestId'], params['requestId'])}")
    return PageProblems(console, failed), list(urls.values())


def assert_no_problems(driver: webdriver.Chrome, what: str) -> None:
    """Fails naming every console error and failed request logged since the last check."""
    problems = collect_problems(driver)
    assert not problems, f"{what} ({driver.current_url}):\n{problems}"
