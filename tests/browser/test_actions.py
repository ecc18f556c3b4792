"""Actions from the dashboard's pages in a real browser end in the right states in the
scheduler: pause stops dispatch and resume runs the task, cancelling a running task, and
requeuing a dead letter."""

from __future__ import annotations

from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from conveyor import TaskState
from tests.browser.chrome import assert_no_problems
from tests.browser.conftest import Stack
from tests.browser.screenshots import screenshot
from tests.browser.ui import by_testid, click_action, open_page, state_of, wait_state
from tests.harness import Cluster, wait_for


def queue_row(driver: webdriver.Chrome, queue: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'tr[data-queue="{queue}"]')


def queued_cell(driver: webdriver.Chrome, queue: str) -> str:
    return str(queue_row(driver, queue).find_element(By.CSS_SELECTOR, '[data-testid="queued"]').text.strip())


def test_pausing_a_queue_stops_dispatch_and_resuming_runs_its_task(stack: Stack, browser: webdriver.Chrome) -> None:
    client = stack.client
    wait_state(client, client.submit("t.add", [1, 1]).id, TaskState.SUCCEEDED)  # the queue exists
    open_page(browser, stack.url + "/queues")
    click_action(browser, "pause", within=queue_row(browser, "default"))
    wait_for(lambda: client.admin.queues("default")[0].paused, 10, what="default to be paused")
    WebDriverWait(browser, 10).until(lambda d: "/queues" in d.current_url)
    assert_no_problems(browser, "the queues page after pause")

    held = client.submit("t.add", [20, 22])
    # The page shows it waiting: by then an unpaused queue would long have handed it to the idle worker.
    open_page(browser, stack.url + "/queues")
    assert queued_cell(browser, "default") == "1"
    assert state_of(client, held.id) is TaskState.QUEUED
    assert all(w.in_flight == 0 for w in client.admin.list_workers())
    screenshot(browser, "queues-paused")

    click_action(browser, "resume", within=queue_row(browser, "default"))
    assert held.result(timeout=15) == 42
    assert not client.admin.queues("default")[0].paused
    assert_no_problems(browser, "the queues page after resume")


def test_cancelling_a_running_task_from_its_page(stack: Stack, browser: webdriver.Chrome) -> None:
    client = stack.client
    running = client.submit("t.async_sleep", [3600])
    wait_state(client, running.id, TaskState.ACTIVE)
    open_page(browser, f"{stack.url}/tasks/{running.id}")
    click_action(browser, "cancel")
    wait_state(client, running.id, TaskState.CANCELLED, timeout=15)
    WebDriverWait(browser, 10).until(lambda d: d.current_url.rstrip("/").endswith(f"/tasks/{running.id}"))
    open_page(browser, f"{stack.url}/tasks/{running.id}")
    assert by_testid(browser, "task-state") == "CANCELLED"
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-action="cancel"]'), "a finished task offers cancel"
    assert_no_problems(browser, "the cancelled task's page")
    screenshot(browser, "task-cancelled")


def requeue_control(driver: webdriver.Chrome, task_id: str) -> None:
    """Requeues one dead letter: its row's own requeue control, or its checkbox then the requeue button."""
    rows = driver.find_elements(By.CSS_SELECTOR, f'[data-task-id="{task_id}"]')
    if rows and rows[0].find_elements(By.CSS_SELECTOR, '[data-action="requeue"]'):
        click_action(driver, "requeue", within=rows[0])
        return
    box = driver.find_element(By.CSS_SELECTOR, f'input[name="ids"][value="{task_id}"]')
    if box.get_attribute("type") == "checkbox" and not box.is_selected():
        box.click()
    form = box.find_element(By.XPATH, "./ancestor::form")
    click_action(driver, "requeue", within=form)


def test_requeuing_a_dead_letter_runs_it_again(stack: Stack, browser: webdriver.Chrome, cluster: Cluster,
                                               tmp_path: Path) -> None:
    client = stack.client
    cluster.worker(stack.dashboard.scheduler, "tests.apps.lifecycle:app", queues="life", name="life-worker")
    # Fails twice (its only retry too), so it is a dead letter; the third call succeeds.
    dead = client.submit("life.flaky", [str(tmp_path / "calls"), 2], queue="life", max_retries=1, retry_backoff=0)
    wait_state(client, dead.id, TaskState.DEAD)
    open_page(browser, stack.url + "/dead?queue=life")
    assert dead.id in browser.page_source
    assert_no_problems(browser, "the dead letters page")
    screenshot(browser, "dead-letters")
    requeue_control(browser, dead.id)
    # The click posts in the background: until the scheduler has taken it, the task is still DEAD,
    # and result() would answer with that; wait for the run the requeue starts to finish.
    wait_state(client, dead.id, TaskState.SUCCEEDED, timeout=15)
    assert dead.result(timeout=1) == 3
    assert client.admin.list_dead_letters("life").total == 0
    open_page(browser, stack.url + "/dead?queue=life")
    assert dead.id not in browser.page_source
    assert_no_problems(browser, "the dead letters page after requeue")
