"""One login, then requests, HTTPX and httpx2 (sync and async) and urllib3 calls to Keycloak across expiries.

The protected resource is Keycloak's userinfo endpoint. The realm's access tokens live 5 s, so ~12 s of
calls cross at least three expiries; Keycloak's events count the logins, refreshes and calls it served.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable

import httpx
import httpx2
import requests
from kc_approve import FormApprover
from kc_server import Keycloak

from deviceauth import DeviceAuth

REALM = "rrap"


def _sha(header: str) -> str:
    return hashlib.sha256(header.encode()).hexdigest()


async def _async_calls(auth: DeviceAuth, url: str) -> list[str]:
    """One call each through httpx.AsyncClient and httpx2.AsyncClient; the Authorization headers they sent."""
    async with (
        httpx.AsyncClient(auth=auth.httpx, trust_env=False) as hx,
        httpx2.AsyncClient(auth=auth.httpx2, trust_env=False) as hx2,
    ):
        responses = [await hx.get(url), await hx2.get(url)]
    for response in responses:
        assert response.status_code == 200, response.text
    return [response.request.headers["Authorization"] for response in responses]


def test_one_login_serves_every_adapter_across_three_expiries(
    kc: Keycloak, make_auth: Callable[..., DeviceAuth], approver: FormApprover
) -> None:
    auth = make_auth()
    url = kc.userinfo_url(REALM)
    seen: set[str] = set()
    calls = 0
    deadline = time.monotonic() + 40
    with (
        requests.Session() as session,
        httpx.Client(auth=auth.httpx, trust_env=False) as hx,
        httpx2.Client(auth=auth.httpx2, trust_env=False) as hx2,
        auth.pool_manager(origins=[kc.base_url]) as pool,
    ):
        session.trust_env = False
        while len(seen) < 4 and time.monotonic() < deadline:  # the first token and three successors
            first = session.get(url, auth=auth, timeout=10)
            second = hx.get(url)
            third = hx2.get(url)
            fourth = pool.request("GET", url, timeout=10)
            for response in (first, second, third):
                assert response.status_code == 200, response.text
            assert fourth.status == 200, fourth.data
            assert first.json()["preferred_username"] == "alice"
            seen |= {
                _sha(first.request.headers["Authorization"]),
                _sha(second.request.headers["Authorization"]),
                _sha(third.request.headers["Authorization"]),
            }
            seen |= {_sha(header) for header in asyncio.run(_async_calls(auth, url))}
            calls += 6
            time.sleep(0.25)

    events = kc.count(REALM)
    assert len(seen) >= 4, f"saw {len(seen)} tokens in 40 s"
    assert len(approver.codes) == 1  # one prompt
    print("Keycloak events:", events)
    # Keycloak 26 records no event for a successful device authorization request; the person's
    # code verification and the device code's exchange for tokens are recorded.
    assert events.get("OAUTH2_DEVICE_VERIFY_USER_CODE", 0) == 1
    assert events.get("OAUTH2_DEVICE_CODE_TO_TOKEN", 0) == 1
    # Every refresh produced a token that was then used: none duplicated, none wasted.
    assert events.get("REFRESH_TOKEN", 0) == len(seen) - 1
    assert events.get("REFRESH_TOKEN_ERROR", 0) == 0
    assert events.get("USER_INFO_REQUEST", 0) == calls
    assert events.get("USER_INFO_REQUEST_ERROR", 0) == 0
