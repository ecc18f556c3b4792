"""What the tests do on the dashboard's pages, through the DOM hooks the contract keeps stable
(`data-action`, `data-testid`, `data-queue`, `data-task-id`), and how they read task states."""

from __future__ import annotations

import contextlib

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from conveyor import Client, TaskState
from tests.harness import wait_for


def open_page(driver: webdriver.Chrome, url: str) -> None:
    """Loads `url` and waits for its body (driver.get already waits for the load event)."""
    driver.get(url)
    WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.TAG_NAME, "body")))


ACTIONS = ("pause", "resume", "purge", "cancel", "retry", "requeue", "drain", "shutdown", "scale", "fire")
"""The contract's data-action names: every control that changes something carries one."""


def actions(driver: webdriver.Chrome | WebElement, action: str | None = None) -> list[WebElement]:
    """Every visible action control (a button or a form with data-action), or those of one action."""
    selector = f'[data-action="{action}"]' if action else ", ".join(f'[data-action="{a}"]' for a in ACTIONS)
    return [e for e in driver.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed() or e.tag_name == "form"]


def click_action(driver: webdriver.Chrome, action: str, within: WebElement | None = None) -> None:
    """Clicks the first `data-action=action` control (a form's submit button when the hook is on
    the form), accepting a confirm() dialog if the click opens one."""
    found = actions(within or driver, action)
    assert found, f"no data-action={action!r} control on {driver.current_url}"
    control = found[0]
    if control.tag_name == "form":
        control = control.find_element(By.CSS_SELECTOR, "button, input[type=submit]")
    control.click()
    with contextlib.suppress(NoAlertPresentException):
        driver.switch_to.alert.accept()
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")


def state_of(client: Client, task_id: str) -> TaskState:
    return TaskState(client.get_task(task_id).state)


def wait_state(client: Client, task_id: str, *states: TaskState, timeout: float = 30.0) -> TaskState:
    """Waits until the scheduler reports the task in one of `states`, and returns that state."""
    def reached() -> TaskState | None:
        state = state_of(client, task_id)
        return state if state in states else None

    found = wait_for(reached, timeout, what=f"task {task_id} to be {'/'.join(s.name for s in states)}")
    assert found is not None
    return found


def by_testid(driver: webdriver.Chrome, testid: str) -> str:
    """The element's visible text, read in one script call: the live pages swap their content
    in place, so finding an element and then reading it could meet a stale element between the
    two. "" when the page has no such element."""
    text = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", f'[data-testid="{testid}"]')
    return str(text).strip()


def csrf_token(driver: webdriver.Chrome) -> str | None:
    """The page's CSRF token: a hidden `csrf` field or a csrf-token meta tag, if it has one."""
    value = driver.execute_script(
        "const f = document.querySelector('input[name=csrf]');"
        "const m = document.querySelector('meta[name=csrf-token], meta[name=csrf]');"
        "return f ? f.value : (m ? m.content : null);")
    return str(value) if value else None


def browser_post(driver: webdriver.Chrome, path: str, fields: dict[str, str],
                 csrf_header: str | None = None) -> int:
    """POSTs a form from the page with the browser's own cookies (a forged request as a script
    on the page could make it) and returns the HTTP status, redirects not followed."""
    return int(driver.execute_async_script(
        """const [path, fields, header, done] = arguments;
        const body = new URLSearchParams(fields);
        const headers = header ? {'X-CSRF-Token': header} : {};
        fetch(path, {method: 'POST', body, headers, redirect: 'manual', credentials: 'same-origin'})
          .then(r => done(r.type === 'opaqueredirect' ? 303 : r.status), e => done(-1));""",
        path, fields, csrf_header))
