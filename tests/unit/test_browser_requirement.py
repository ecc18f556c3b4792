"""The browser tests skip without chromium only outside CI: with CI set, a missing chromium fails
them (`.ci/run` installs it, so a CI run must never pass by skipping them)."""

from __future__ import annotations

import pytest

from tests.browser import chrome


def test_missing_chromium_skips_outside_ci_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chrome.shutil, "which", lambda name: None)
    assert chrome.find_chromium() is None
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium and chromedriver are not installed"):
        chrome.require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set but chromium"):
        chrome.require_chromium()


def test_chromium_needs_its_driver_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chrome.shutil, "which", lambda name: f"/usr/bin/{name}" if name == "chromium" else None)
    assert chrome.find_chromium() is None
    monkeypatch.setattr(chrome.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert chrome.find_chromium() == chrome.ChromiumPaths("/usr/bin/chromium", "/usr/bin/chromedriver")
