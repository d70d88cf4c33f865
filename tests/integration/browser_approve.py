"""Approve a device login the way a person would: headless Chromium on the verification page.

Drives oidc-provider's own pages (tests/server/server.mjs enables its dev interactions):
code confirmation (or code entry) -> login (any login and password) -> consent -> success,
and the embedded server's (deviceauth.testing): code entry -> review and sign in -> success.
Uses Debian's /usr/bin/chromium through Playwright's sync API; never downloads a browser.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def chromium_available() -> bool:
    return CHROMIUM.exists()


def _page_text(page: Page) -> str:
    try:
        return page.inner_text("body")[:2000]
    except Exception as err:  # diagnostics only
        return f"(page text unavailable: {err})"


def _advance(page: Page, username: str, user_code: str) -> bool:
    """Act on whichever oidc-provider page is showing; True once the success page is reached.

    Each page is recognised by its form, so a skipped step (e.g. consent already given in
    this browser context) does not matter."""
    page.wait_for_load_state("domcontentloaded")
    if page.title() in ("Sign-in Success", "Signed in"):  # oidc-provider's, deviceauth.testing's
        return True
    if page.locator('form[id="op.deviceConfirmForm"]').count():
        submit = 'button[autofocus][form="op.deviceConfirmForm"]'
    elif page.locator('form[id="op.deviceInputForm"]').count():
        if not user_code:
            raise RuntimeError("code entry page shown but the URI carries no user_code")
        page.fill('form[id="op.deviceInputForm"] input[name="user_code"]', user_code)
        submit = 'button[form="op.deviceInputForm"]'
    elif page.locator('input[name="prompt"][value="login"]').count():
        page.fill('input[name="login"]', username)
        page.fill('input[name="password"]', "any-password")
        submit = "button.login-submit"
    elif page.locator('input[name="prompt"][value="consent"]').count():
        submit = "button.login-submit"
    elif page.locator("input[name=form_token]").count():  # deviceauth.testing: review, name, approve
        page.fill("#username", username)
        submit = "button[value=approve]"
    elif page.locator("input#user_code").count():  # deviceauth.testing: code entry
        page.fill("input#user_code", user_code)
        submit = "button[type=submit]"
    else:
        # In between: e.g. the GET with ?user_code= answers with a self-submitting form_post
        # page that is already navigating on to the confirmation page.
        page.wait_for_timeout(50)
        return False
    # Every form POSTs and redirects; wait for the page it lands on.
    with page.expect_navigation(wait_until="domcontentloaded"):
        page.click(submit)
    return False


def approve_in_browser(
    verification_uri_complete: str,
    *,
    username: str = "alice",
    timeout: float = 30.0,
) -> None:
    """Open the verification URI, confirm the code, log in as `username`, consent, and wait
    for oidc-provider's "Sign-in Success" page. Raises RuntimeError if it does not get there
    within `timeout` seconds (with the page's URL and text for diagnosis)."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import Route, sync_playwright

    user_code = parse_qs(urlsplit(verification_uri_complete).query).get("user_code", [""])[0]
    deadline = time.monotonic() + timeout
    step_ms = 5000

    def offline(route: Route) -> None:
        # The default pages @import a web font; there is no internet, so fail such requests at
        # once instead of letting Chromium wait on DNS.
        host = urlsplit(route.request.url).hostname or ""
        if host in _LOOPBACK_HOSTS or route.request.url.startswith(("data:", "about:")):
            route.continue_()
        else:
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.route("**/*", offline)
            page = context.new_page()
            page.set_default_timeout(step_ms)
            page.goto(verification_uri_complete, wait_until="domcontentloaded")

            last_error: Exception | None = None
            while True:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"device approval did not finish within {timeout:.0f} s; "
                        f"last page {page.url} (last error: {last_error}):\n{_page_text(page)}"
                    )
                try:
                    if _advance(page, username, user_code):
                        return
                except PlaywrightError as err:
                    # Most likely the document went away mid-navigation; look again until the
                    # deadline (each Playwright call is itself bounded by the step timeout).
                    last_error = err
                    page.wait_for_timeout(50)
        finally:
            browser.close()
