"""One login approved through Keycloak's real pages in headless Chromium."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from kc_browser import CHROMIUM, approve_in_browser
from kc_server import Keycloak

from deviceauth import DeviceAuth, DeviceCode

REALM = "rrap"

pytestmark = pytest.mark.browser


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (scripts/test installs it)"
)
def test_login_approved_in_chromium(kc: Keycloak, make_auth: Callable[..., DeviceAuth]) -> None:
    pytest.importorskip("playwright.sync_api")
    took: list[float] = []

    def person(code: DeviceCode) -> None:
        took.append(approve_in_browser(code.verification_uri, code.user_code))

    auth = make_auth(prompt=person)
    response = requests.get(kc.userinfo_url(REALM), auth=auth, timeout=10)
    assert response.status_code == 200
    assert response.json()["preferred_username"] == "alice"
    print(f"approved in Chromium in {took[0]:.1f} s")
    events = kc.count(REALM)
    assert events.get("OAUTH2_DEVICE_VERIFY_USER_CODE", 0) == 1
    assert events.get("LOGIN", 0) == 1
    assert events.get("OAUTH2_DEVICE_CODE_TO_TOKEN", 0) == 1
