"""Every page of the dashboard renders in a real browser with no console error and no failed
request, against a real scheduler, worker and Redis; each page's screenshot is an artifact."""

from __future__ import annotations

import os

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conveyor import TaskState, chord, signature
from tests.browser.chrome import assert_no_problems
from tests.browser.conftest import Stack
from tests.browser.screenshots import screenshot, write_readme_images
from tests.browser.ui import open_page, wait_state


def populate(stack: Stack) -> dict[str, str]:
    """A succeeded task, a failed one, a dead letter, a schedule and a workflow: something on every page."""
    client = stack.client
    ok = client.submit("t.add", [2, 3], headers={"tenant": "acme"})
    failed = client.submit("t.fail", ["the answer was 41"])
    dead = client.submit("t.fail", ["gone for good"], max_retries=1, retry_backoff=0)
    client.schedules.create("nightly-report", "t.add", [1, 1], cron="0 2 * * *")
    workflow = client.submit_workflow(chord([signature("t.add", [i, 1]) for i in range(3)], signature("t.echo")))
    wait_state(client, ok.id, TaskState.SUCCEEDED)
    wait_state(client, failed.id, TaskState.FAILED)
    wait_state(client, dead.id, TaskState.DEAD)
    assert workflow.result(timeout=30) == [1, 2, 3]
    return {"ok": ok.id, "failed": failed.id, "dead": dead.id, "workflow": workflow.id}


def test_every_page_renders_with_no_console_error_and_no_failed_request(stack: Stack,
                                                                        browser: webdriver.Chrome) -> None:
    ids = populate(stack)
    pages = {
        "overview": "/",
        "queues": "/queues",
        "tasks": "/tasks",
        "tasks-failed": "/tasks?queue=default&state=FAILED",
        "task-succeeded": f"/tasks/{ids['ok']}",
        "task-failed": f"/tasks/{ids['failed']}",
        "task-dead": f"/tasks/{ids['dead']}",
        "dead": "/dead?queue=default",
        "workers": "/workers",
        "schedules": "/schedules",
        "workflows": "/workflows",
        "workflow": f"/workflows/{ids['workflow']}",
    }
    for name, path in pages.items():
        open_page(browser, stack.url + path)
        assert browser.find_elements(By.CSS_SELECTOR, "main, table, h1"), f"{path} shows nothing"
        screenshot(browser, f"page-{name}")
        assert_no_problems(browser, f"page {path}")
    open_page(browser, stack.url + "/")  # leave the overview's event stream open, then look again
    # The chart draws the scheduler's hour (60 minutes) and takes pushes without a script error.
    points = browser.execute_script("return JSON.parse(document.getElementById('chart').dataset.history).length")
    assert points == 60
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart canvas"))
    WebDriverWait(browser, 15).until(  # a push has been drawn (the handler counts them last)
        lambda d: int(d.find_element(By.CSS_SELECTOR, "[data-sse]").get_attribute("data-pushes") or 0) >= 1)
    assert_no_problems(browser, "the overview again")
    if os.environ.get("CONVEYOR_README_IMAGES") == "1":
        write_readme_images(browser, stack.url, ids["failed"])
