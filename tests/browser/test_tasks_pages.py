"""The tasks list's filter and a task's page in a real browser: a failed task is found by its
state, its page shows the decoded args and the traceback, and a task page follows its task to
SUCCEEDED by itself (server-sent events) within 2 s of the task finishing."""

from __future__ import annotations

import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from conveyor import TaskState
from tests.browser.chrome import BrowserLog, assert_no_problems
from tests.browser.conftest import Stack
from tests.browser.screenshots import screenshot
from tests.browser.ui import by_testid, open_page, wait_state


def set_filter(driver: webdriver.Chrome, field: str, value: str) -> None:
    """Types or selects `value` in the tasks filter's field `field`."""
    element = driver.find_element(By.CSS_SELECTOR, f'form [name="{field}"]')
    if element.tag_name == "select":
        select = Select(element)
        if any(o.text.strip() == value for o in select.options):
            select.select_by_visible_text(value)
        else:
            select.select_by_value(value)
    else:
        element.clear()
        element.send_keys(value)


def test_the_filter_finds_a_failed_task_whose_page_shows_decoded_args_and_the_traceback(
        stack: Stack, browser: webdriver.Chrome) -> None:
    client = stack.client
    oks = [client.submit("t.add", [i, i]) for i in range(5)]
    failed = client.submit("t.fail", ["needle-4711"], headers={"tenant": "acme"})
    for handle in oks:
        wait_state(client, handle.id, TaskState.SUCCEEDED)
    wait_state(client, failed.id, TaskState.FAILED)

    open_page(browser, stack.url + "/tasks")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-task-id]")
    assert {r.get_attribute("data-task-id") for r in rows} >= {failed.id, *(h.id for h in oks)}
    set_filter(browser, "state", "FAILED")
    form = browser.find_element(By.CSS_SELECTOR, 'form [name="state"]').find_element(By.XPATH, "./ancestor::form")
    form.submit()
    WebDriverWait(browser, 10).until(lambda d: "state=FAILED" in d.current_url)
    WebDriverWait(browser, 10).until(
        lambda d: [r.get_attribute("data-task-id") for r in d.find_elements(By.CSS_SELECTOR, "tr[data-task-id]")]
        == [failed.id])
    assert_no_problems(browser, "the filtered tasks list")
    screenshot(browser, "tasks-filtered-failed")

    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-task-id="{failed.id}"]')
    row.find_element(By.CSS_SELECTOR, f'a[href*="{failed.id}"]').click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.rstrip("/").endswith(f"/tasks/{failed.id}"))
    assert by_testid(browser, "task-state") == "FAILED"
    assert '"needle-4711"' in by_testid(browser, "task-args")  # decoded JSON, not base64
    tracebacks = browser.find_elements(By.CSS_SELECTOR, '[data-testid="traceback"]')
    assert len(tracebacks) == 1
    assert "ValueError" in tracebacks[0].text and "needle-4711" in tracebacks[0].text
    assert "Traceback (most recent call last)" in tracebacks[0].text
    assert "tenant" in by_testid(browser, "task-headers") and "acme" in by_testid(browser, "task-headers")
    assert_no_problems(browser, "the failed task's page")
    screenshot(browser, "task-failed")


def test_a_task_page_follows_its_task_to_succeeded_without_a_reload(stack: Stack, browser: webdriver.Chrome,
                                                                     tmp_path: Path) -> None:
    release = tmp_path / "release"
    handle = stack.client.submit("t.wait_file", [str(release), {"answer": 42}])
    wait_state(stack.client, handle.id, TaskState.ACTIVE)
    open_page(browser, f"{stack.url}/tasks/{handle.id}")
    assert by_testid(browser, "task-state") == "ACTIVE"
    stream = f"/events/tasks/{handle.id}"
    seen = BrowserLog(browser)
    WebDriverWait(browser, 10).until(lambda _: seen.read().requested(stream))  # the page follows its task
    assert not seen.problems, f"the task page:\n{seen.problems}"

    browser.execute_script("window.conveyorTestMarker = 1;")  # gone if the page reloads
    release.touch()
    wait_state(stack.client, handle.id, TaskState.SUCCEEDED, timeout=10)
    finished = time.monotonic()
    WebDriverWait(browser, 2, poll_frequency=0.05).until(lambda d: by_testid(d, "task-state") == "SUCCEEDED")
    assert time.monotonic() - finished < 2.0
    WebDriverWait(browser, 5).until(lambda d: '"answer"' in by_testid(d, "task-result"))
    assert browser.execute_script("return window.conveyorTestMarker;") == 1  # swapped in place, not reloaded
    assert_no_problems(browser, "the live task page")
    screenshot(browser, "task-live-succeeded")
