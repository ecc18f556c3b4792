"""Roles and CSRF in a real browser: a reader signed in with its token is offered no action and
a POST it forges is refused (403) and changes nothing; a POST without a valid CSRF token is
refused whoever sends it."""

from __future__ import annotations

from selenium import webdriver

from conveyor import TaskState, WorkflowState, signature
from conveyor.v1 import schedule_service_pb2
from tests.browser.chrome import assert_no_problems, collect_problems
from tests.browser.conftest import ADMIN_TOKEN, READER_TOKEN, Stack, sign_in
from tests.browser.screenshots import screenshot
from tests.browser.ui import actions, browser_post, csrf_token, open_page, wait_state
from tests.harness import wait_for

PAGES = ("/", "/queues", "/tasks", "/dead?queue=default", "/workers", "/schedules")


def populate(stack: Stack) -> tuple[str, str]:
    """Something to act on on every page: a queue, a dead letter, a worker, a schedule, a failed
    workflow; returns the dead letter's id and the workflow's."""
    client = stack.client
    wait_state(client, client.submit("t.add", [1, 2]).id, TaskState.SUCCEEDED)
    dead = client.submit("t.fail", ["x"], max_retries=1, retry_backoff=0)
    wait_state(client, dead.id, TaskState.DEAD)
    client.schedules.create("hourly", "t.add", [1, 1], cron="0 * * * *")
    failed = client.submit_workflow(signature("t.add", [1, 1])
                                    | signature("t.fail", ["y"], immutable=True, max_retries=0))
    wait_for(lambda: failed.state() is WorkflowState.FAILED, 30, what="the workflow to fail")
    return dead.id, failed.id


def count_adds(stack: Stack) -> int:
    return sum(1 for _ in stack.client.admin.iter_tasks("default", name="t.add"))


def test_a_reader_sees_no_action_and_its_forged_post_is_refused(secured_stack: Stack,
                                                               browser: webdriver.Chrome) -> None:
    stack = secured_stack
    dead_id, workflow_id = populate(stack)
    sign_in(browser, stack.url, ADMIN_TOKEN)  # the control: an admin is offered the actions
    offered = {}
    for path in PAGES:
        open_page(browser, stack.url + path)
        offered[path] = {e.get_attribute("data-action") for e in actions(browser)}
    open_page(browser, f"{stack.url}/tasks/{dead_id}")
    offered["task"] = {e.get_attribute("data-action") for e in actions(browser)}
    open_page(browser, f"{stack.url}/workflows/{workflow_id}")
    offered["workflow"] = {e.get_attribute("data-action") for e in actions(browser)}
    assert {"pause", "purge"} <= offered["/queues"] and "requeue" in offered["/dead?queue=default"]
    assert "drain" in offered["/workers"] and "fire" in offered["/schedules"] and "retry" in offered["task"]
    assert offered["workflow"] == {"retry"}
    browser.delete_all_cookies()

    sign_in(browser, stack.url, READER_TOKEN)
    for path in (*PAGES, f"/tasks/{dead_id}", f"/workflows/{workflow_id}"):
        open_page(browser, stack.url + path)
        assert not actions(browser), f"a reader is offered {[e.get_attribute('data-action') for e in actions(browser)]}"
        assert_no_problems(browser, f"{path} as a reader")
        screenshot(browser, f"reader-{path.strip('/').split('?')[0].replace('/', '-') or 'overview'}")

    open_page(browser, stack.url + "/queues")
    token = csrf_token(browser)
    assert token, "no CSRF token on the reader's page: the 403s below would not show the role check"
    adds_before = count_adds(stack)
    forged = {"/queues/default/pause": {}, "/queues/default/purge": {"confirm": "0"},
              f"/tasks/{dead_id}/retry": {}, "/dead/default/requeue": {"all": "1"}, "/dead/default/purge": {"all": "1"},
              "/schedules/hourly/pause": {}, "/schedules/hourly/fire": {}, f"/workflows/{workflow_id}/retry": {}}
    for path, fields in forged.items():
        assert browser_post(browser, path, {**fields, "csrf": token}, csrf_header=token) == 403, path
    collect_problems(browser)  # the refused fetches log their 403s: expected here

    queue = stack.client.admin.queues("default")[0]
    assert not queue.paused and queue.dead == 1
    assert stack.client.admin.list_dead_letters("default").total == 1
    assert TaskState(stack.client.get_task(dead_id).state) is TaskState.DEAD
    assert stack.client.schedules.get("hourly").state != schedule_service_pb2.SCHEDULE_STATE_PAUSED
    assert count_adds(stack) == adds_before  # the schedule never fired, the workflow did not run again
    assert stack.client.workflow(workflow_id).get().run == 1


def test_a_post_without_a_valid_csrf_token_is_refused(stack: Stack, browser: webdriver.Chrome) -> None:
    client = stack.client
    wait_state(client, client.submit("t.add", [1, 2]).id, TaskState.SUCCEEDED)
    open_page(browser, stack.url + "/queues")
    token = csrf_token(browser)
    assert token, "the queues page carries no CSRF token (a hidden csrf field or a csrf-token meta tag)"
    path = "/queues/default/pause"
    assert browser_post(browser, path, {}) == 403
    assert browser_post(browser, path, {"csrf": "not-the-token"}) == 403
    assert browser_post(browser, path, {"csrf": token[:-2] + ("aa" if not token.endswith("aa") else "bb")}) == 403
    assert browser_post(browser, path, {}, csrf_header="not-the-token") == 403
    with stack.dashboard.http() as http:  # another site's form: no cookie of ours, the token copied
        assert http.post(path, data={"csrf": token}).status_code == 403
    collect_problems(browser)
    assert not client.admin.queues("default")[0].paused

    assert browser_post(browser, path, {"csrf": token}) == 303  # the control: the right token works
    assert client.admin.queues("default")[0].paused
    assert browser_post(browser, "/queues/default/resume", {}, csrf_header=token) == 303
    assert not client.admin.queues("default")[0].paused
