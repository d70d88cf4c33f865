"""The verification page in a real browser: headless Debian Chromium approves a login and leaves screenshots.

Screenshots go to ``$DEVICEAUTH_TEST_OUTPUT`` or ``build/test-output/`` (git-ignored), for a
person to look at. Skipped where /usr/bin/chromium is missing; never downloads a browser.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
from oauth_calls import api, poll, start

from deviceauth.testing import AuthServer

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(os.environ.get("DEVICEAUTH_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "build" / "test-output"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"),
]


def test_a_person_approves_in_chromium(server: AuthServer, http: requests.Session) -> None:
    from playwright.sync_api import sync_playwright

    flow = start(http, server, scope="openid profile")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            page = browser.new_page(viewport={"width": 720, "height": 640})
            page.set_default_timeout(10_000)
            page.goto(flow["verification_uri"])
            page.fill("#user_code", flow["user_code"].lower())
            page.click("button[type=submit]")
            page.wait_for_selector("#user-code")
            assert page.inner_text("#user-code") == flow["user_code"]
            assert "profile" in page.inner_text("#scopes")
            page.screenshot(path=str(OUTPUT / "verification-page.png"), full_page=True)
            page.fill("#username", "carol")
            page.click("button[value=approve]")
            page.wait_for_selector("#outcome")
            assert "Signed in as carol" in page.inner_text("#outcome")
            page.screenshot(path=str(OUTPUT / "verification-done.png"), full_page=True)
        finally:
            browser.close()
    status, tokens = poll(http, server, flow["device_code"])
    assert status == 200
    assert api(http, server, tokens["access_token"]).json()["sub"] == "carol"
    shot = (OUTPUT / "verification-page.png").read_bytes()
    assert shot.startswith(b"\x89PNG") and len(shot) > 5000
