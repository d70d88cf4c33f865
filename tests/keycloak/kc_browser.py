"""Approve a Keycloak device login in headless Debian Chromium (playwright), as a person would.

Keycloak's own pages: enter the user code → sign in → grant access → "Device Login Successful".
Each page is recognised by its form, so a skipped page (consent already given) does not matter.
Never downloads a browser: /usr/bin/chromium or the test is skipped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from kc_approve import PASSWORD, USERNAME

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]


def _step(page: Page, user_code: str) -> bool:
    page.wait_for_load_state("domcontentloaded")
    if "device login successful" in page.inner_text("body").lower():
        return True
    if page.locator("#device_user_code").count():
        page.fill("#device_user_code", user_code)
    elif page.locator("#kc-form-login").count():
        page.fill("#username", USERNAME)
        page.fill("#password", PASSWORD)
    elif not page.locator('[name="accept"]').count():
        page.wait_for_timeout(100)  # between pages
        return False
    submit = '[name="accept"]' if page.locator('[name="accept"]').count() else "#kc-login"
    with page.expect_navigation(wait_until="domcontentloaded"):
        page.click(submit)
    return False


def approve_in_browser(verification_uri: str, user_code: str, *, timeout: float = 60.0) -> float:
    """Approve ``user_code`` on ``verification_uri``; returns the seconds it took."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    def loopback_only(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if host in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "about:")):
            route.continue_()
        else:
            route.abort()

    started = time.monotonic()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_context().new_page()
            page.route("**/*", loopback_only)
            page.set_default_timeout(10_000)
            page.goto(verification_uri, wait_until="domcontentloaded")
            for _ in range(200):  # bounded; each step is bounded by the page timeout too
                if time.monotonic() - started > timeout:
                    break
                try:
                    if _step(page, user_code):
                        return time.monotonic() - started
                except PlaywrightError:
                    page.wait_for_timeout(100)  # the page went away mid-navigation: look again
            raise RuntimeError(f"approval did not finish: {page.url}\n{page.inner_text('body')[:1000]}")
        finally:
            browser.close()
