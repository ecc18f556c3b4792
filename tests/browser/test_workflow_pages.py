"""The workflow page in a real browser, with real workers of tests/apps/workflows.py on the queue
`wf`: a chord's nodes and edges, followed live to SUCCEEDED; a 1,000-node chord as one box of
state squares counted live; a failed workflow's failed node and error, and Retry from the page
running it again; Cancel from the page; a node's task page linking to its workflow, and the
form that opens a workflow by id."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conveyor import TaskState, WorkflowState, chord
from conveyor.canvas import Canvas, Signature
from conveyor.workflow_snapshots import WorkflowSnapshot
from tests.apps.workflows import add, mark, then, tsum, wait_file
from tests.browser.chrome import BrowserLog, assert_no_problems
from tests.browser.conftest import Stack
from tests.browser.screenshots import screenshot
from tests.browser.ui import by_testid, click_action, open_page
from tests.harness import Cluster, wait_for

QUEUE = "wf"
WAIT = 60.0


@pytest.fixture
def wf_stack(stack: Stack, cluster: Cluster) -> Iterator[Stack]:
    """The stack, and a worker of the workflow tasks on the queue `wf`."""
    cluster.worker(stack.dashboard.scheduler, "tests.apps.workflows:app", queues=QUEUE, concurrency=16,
                   name="wf-worker")
    yield stack


def on_wf(sig: Signature) -> Signature:
    return sig.set(queue=QUEUE)


def snapshot_when(stack: Stack, workflow_id: str, ok: Any, what: str) -> WorkflowSnapshot:
    """Waits until ok(snapshot) holds and returns that snapshot."""
    handle = stack.client.workflow(workflow_id)

    def reached() -> WorkflowSnapshot | None:
        snap = handle.get()
        return snap if ok(snap) else None

    found = wait_for(reached, WAIT, what=what)
    assert found is not None
    return found


def node_text(driver: webdriver.Chrome, key: str, within: str = ".graph") -> str:
    """The visible text of node `key`'s card in the graph ("" when it has none)."""
    text = driver.execute_script(
        "const e = document.querySelector(arguments[0] + ' [data-node=\"' + CSS.escape(arguments[1]) + '\"]');"
        "return e ? e.innerText : '';", within, key)
    return str(text).strip()


def node_state(driver: webdriver.Chrome, key: str) -> str:
    """Node `key`'s state as the page shows it (its card's or square's data-state)."""
    return str(driver.execute_script(
        "const e = document.querySelector('.graph [data-node=\"' + CSS.escape(arguments[0]) + '\"]');"
        "return e ? e.dataset.state : '';", key))


def edges_drawn(driver: webdriver.Chrome) -> int:
    return int(driver.execute_script("return document.querySelectorAll('.graph svg path.edge').length"))


def follows(driver: webdriver.Chrome, workflow_id: str) -> None:
    """Waits until the page has opened its workflow's event stream."""
    seen = BrowserLog(driver)
    WebDriverWait(driver, 10).until(lambda _: seen.read().requested(f"/events/workflows/{workflow_id}"))
    assert not seen.problems, f"the workflow page:\n{seen.problems}"


def submit(stack: Stack, canvas: Canvas, **options: Any) -> str:
    return stack.client.submit_workflow(canvas, **options).id


def test_a_chord_page_shows_its_nodes_and_follows_it_to_succeeded_without_a_reload(
        wf_stack: Stack, browser: webdriver.Chrome, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    headers = [on_wf(add.s(i, 1)) for i in range(4)] + [on_wf(wait_file.s(str(gate), 100))]
    wid = submit(wf_stack, chord(headers, on_wf(tsum.s())))
    snapshot_when(wf_stack, wid, lambda s: s.finished_nodes == 4 and s.node("4").state is TaskState.ACTIVE,
                  "four headers done and the gated one running")

    open_page(browser, f"{wf_stack.url}/workflows/{wid}")
    assert by_testid(browser, "workflow-state") == "RUNNING"
    assert by_testid(browser, "workflow-progress") == "4 of 6"
    for key in "0123":
        assert node_state(browser, key) == "SUCCEEDED"
        assert "wf.add" in node_text(browser, key) and QUEUE in node_text(browser, key)
    assert node_state(browser, "4") == "ACTIVE"
    callback = node_text(browser, "5")
    assert "WAITING" in callback and "wf.tsum" in callback and "after 0, 1, 2, 3, … 5 in all (list)" in callback
    assert "not submitted" in callback
    assert edges_drawn(browser) == 5  # every header to the callback
    columns = browser.execute_script(
        "return [...document.querySelectorAll('.graph .column')].map(c => c.querySelectorAll('[data-node]').length)")
    assert columns == [5, 1]
    follows(browser, wid)
    assert_no_problems(browser, "the running chord's page")
    screenshot(browser, "workflow-chord-running")

    browser.execute_script("window.conveyorTestMarker = 1;")  # gone if the page reloads
    gate.touch()
    WebDriverWait(browser, 15, poll_frequency=0.05).until(lambda d: by_testid(d, "workflow-state") == "SUCCEEDED")
    WebDriverWait(browser, 5).until(lambda d: by_testid(d, "workflow-result") == "110")  # 1+2+3+4 + 100
    assert by_testid(browser, "workflow-progress") == "6 of 6"
    assert all(node_state(browser, key) == "SUCCEEDED" for key in "012345")
    link = browser.find_element(By.CSS_SELECTOR, '.graph [data-node="5"] a[data-task-link]')
    assert link.get_attribute("href").endswith("/tasks/" + wf_stack.client.workflow(wid).get().node("5").task_id)
    assert browser.execute_script("return window.conveyorTestMarker;") == 1  # swapped in place, not reloaded
    assert edges_drawn(browser) == 5
    assert_no_problems(browser, "the chord's page, live to SUCCEEDED")
    screenshot(browser, "workflow-chord-succeeded")


def test_a_1000_node_chord_is_one_box_of_state_squares_counted_live(
        wf_stack: Stack, browser: webdriver.Chrome, tmp_path: Path) -> None:
    gate, last = tmp_path / "gate", tmp_path / "last"
    headers = [on_wf(add.s(i, 1)) for i in range(999)] + [on_wf(wait_file.s(str(gate), 0))]
    wid = submit(wf_stack, chord(headers, on_wf(wait_file.si(str(last), "done"))))  # .si: gets no list
    snapshot_when(wf_stack, wid, lambda s: s.finished_nodes == 999 and s.node("999").state is TaskState.ACTIVE,
                  "999 headers done and the gated one running")

    started = time.monotonic()
    open_page(browser, f"{wf_stack.url}/workflows/{wid}")
    loaded = time.monotonic() - started
    groups = browser.find_elements(By.CSS_SELECTOR, ".graph .group")
    assert len(groups) == 1
    assert len(groups[0].find_elements(By.CSS_SELECTOR, ".sq")) == 1000
    assert by_testid(browser, "group-counts") == "1 ACTIVE · 999 SUCCEEDED"
    assert "1000 nodes" in groups[0].text and "wf.add (999), wf.wait_file (1)" in groups[0].text
    assert "WAITING" in node_text(browser, "1000") and "1000 in all (waits only)" in node_text(browser, "1000")
    assert edges_drawn(browser) == 1  # the box to the callback, not 1,000 lines
    assert len(browser.find_elements(By.CSS_SELECTOR, '[data-testid="nodes"] tbody tr')) == 100  # a page
    assert browser.find_elements(By.CSS_SELECTOR, ".pager a[rel=next]")
    elements = browser.execute_script("return document.getElementsByTagName('*').length")
    assert elements < 3000, f"{elements} elements for a 1,000-node chord"
    assert loaded < 5, f"the page took {loaded:.1f} s"
    follows(browser, wid)
    assert_no_problems(browser, "the 1,000-node chord's page")
    screenshot(browser, "workflow-chord-1000-running")

    browser.execute_script("window.conveyorTestMarker = 1;")  # gone if the page reloads
    gate.touch()  # the last header ends, the callback starts (and waits for `last`)
    WebDriverWait(browser, 15, poll_frequency=0.05).until(lambda d: by_testid(d, "group-counts") == "1000 SUCCEEDED")
    WebDriverWait(browser, 15).until(lambda d: node_state(d, "1000") in ("QUEUED", "ACTIVE"))
    assert by_testid(browser, "workflow-state") == "RUNNING"  # counted live, not by a reload
    assert by_testid(browser, "workflow-progress") == "1000 of 1001"
    assert browser.execute_script("return window.conveyorTestMarker;") == 1
    last.touch()
    WebDriverWait(browser, 15, poll_frequency=0.05).until(lambda d: by_testid(d, "workflow-state") == "SUCCEEDED")
    WebDriverWait(browser, 5).until(lambda d: by_testid(d, "workflow-result") == '"done"')
    assert by_testid(browser, "group-counts") == "1000 SUCCEEDED" and node_state(browser, "1000") == "SUCCEEDED"
    assert_no_problems(browser, "the 1,000-node chord's page at the end")
    screenshot(browser, "workflow-chord-1000-succeeded")


def runs(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_a_failed_workflow_shows_the_failed_node_and_retry_from_the_page_runs_it_again(
        wf_stack: Stack, browser: webdriver.Chrome, tmp_path: Path) -> None:
    log, broken = tmp_path / "runs.log", tmp_path / "broken"
    broken.touch()
    canvas = (on_wf(mark.s(str(log), "a", 1)) | on_wf(then.s(str(log), "b", str(broken)))
              | on_wf(then.s(str(log), "c")))
    wid = submit(wf_stack, canvas)
    snapshot_when(wf_stack, wid, lambda s: s.state is WorkflowState.FAILED, "the workflow to fail")

    open_page(browser, f"{wf_stack.url}/workflows/{wid}")
    assert by_testid(browser, "workflow-state") == "FAILED"
    error = by_testid(browser, "workflow-error")
    assert error.startswith("Node 1") and "ended FAILED" in error
    assert f"RuntimeError: b fails while {broken} exists" in error
    assert by_testid(browser, "failed-node") == "1"
    assert [node_state(browser, k) for k in "012"] == ["SUCCEEDED", "FAILED", "CANCELLED"]
    assert "not submitted" in node_text(browser, "2")
    assert edges_drawn(browser) == 2
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-action="cancel"]'), "a failed workflow offers cancel"
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=workflow-state][data-sse]")  # ended: no stream
    assert_no_problems(browser, "the failed workflow's page")
    screenshot(browser, "workflow-failed")

    broken.unlink()
    click_action(browser, "retry")
    WebDriverWait(browser, 10).until(lambda d: "run 2" in by_testid(d, "flash"))
    WebDriverWait(browser, 15, poll_frequency=0.05).until(lambda d: by_testid(d, "workflow-state") == "SUCCEEDED")
    WebDriverWait(browser, 5).until(lambda d: by_testid(d, "workflow-result") == "3")  # 1, then + 1 twice
    assert by_testid(browser, "workflow-run") == "2" and "run 2" in by_testid(browser, "flash")
    assert not by_testid(browser, "workflow-error")
    assert [node_state(browser, k) for k in "012"] == ["SUCCEEDED"] * 3
    assert runs(log) == ["a", "b", "b", "c"]  # a kept its result; b ran again, c once
    assert wf_stack.client.workflow(wid).get().state is WorkflowState.SUCCEEDED
    assert_no_problems(browser, "the retried workflow's page")
    screenshot(browser, "workflow-retried")


def test_cancelling_a_running_workflow_from_its_page(wf_stack: Stack, browser: webdriver.Chrome,
                                                     tmp_path: Path) -> None:
    gate, log = tmp_path / "gate", tmp_path / "runs.log"
    wid = submit(wf_stack, on_wf(wait_file.s(str(gate), 1)) | on_wf(then.s(str(log), "after")))
    snapshot_when(wf_stack, wid, lambda s: s.node("0").state is TaskState.ACTIVE, "the first node to run")
    open_page(browser, f"{wf_stack.url}/workflows/{wid}")
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-action="retry"]'), "a running workflow offers retry"
    click_action(browser, "cancel")
    snapshot_when(wf_stack, wid, lambda s: s.state is WorkflowState.CANCELLED, "the workflow to be cancelled")
    WebDriverWait(browser, 15).until(lambda d: by_testid(d, "workflow-state") == "CANCELLED")
    assert node_state(browser, "1") == "CANCELLED"
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-action="retry"]'))
    gate.touch()
    assert runs(log) == []
    assert_no_problems(browser, "the cancelled workflow's page")


def test_a_nodes_task_page_links_to_its_workflow_which_the_form_opens_too(wf_stack: Stack,
                                                                          browser: webdriver.Chrome) -> None:
    handle = wf_stack.client.submit_workflow(on_wf(add.s(1, 2)) | on_wf(add.s(10)))
    assert handle.result(timeout=WAIT) == 13
    second = handle.get().node("1").task_id

    open_page(browser, f"{wf_stack.url}/tasks/{second}")
    assert by_testid(browser, "workflow-link") == handle.id and by_testid(browser, "workflow-node") == "1"
    browser.find_element(By.CSS_SELECTOR, '[data-testid="workflow-link"]').click()
    WebDriverWait(browser, 10).until(lambda d: f"/workflows/{handle.id}" in d.current_url)
    assert browser.current_url.endswith("#node-1")
    assert by_testid(browser, "workflow-state") == "SUCCEEDED" and by_testid(browser, "workflow-result") == "13"
    assert browser.execute_script("return document.querySelector(':target').dataset.node") == "1"
    assert_no_problems(browser, "the workflow page from a task's link")

    open_page(browser, f"{wf_stack.url}/tasks?queue={QUEUE}")  # the tasks list links each node's workflow
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-task-id="{second}"]')
    assert row.find_element(By.CSS_SELECTOR, '[data-testid="workflow-link"]').get_attribute("href").endswith(
        f"/workflows/{handle.id}#node-1")

    open_page(browser, f"{wf_stack.url}/workflows")
    field = browser.find_element(By.CSS_SELECTOR, '[data-testid="open-workflow"] input[name="id"]')
    field.send_keys(f"  {handle.id} ")
    field.submit()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.rstrip("/").endswith(f"/workflows/{handle.id}"))
    assert by_testid(browser, "workflow-state") == "SUCCEEDED"
    assert_no_problems(browser, "the workflow page from the form")
    screenshot(browser, "workflow-chain")
