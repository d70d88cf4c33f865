"""Keycloak's session rules as deviceauth meets them: SSO Session Max, logout, slow_down, offline tokens."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from kc_approve import FormApprover, check_approved, walk
from kc_server import CLIENT_ID, Keycloak

from deviceauth import DeviceAuth, DeviceCode, LoginRequired

REALM, SHORT_REALM = "rrap", "rrap-short"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _userinfo(kc: Keycloak, realm: str, token: str) -> requests.Response:
    return requests.get(kc.userinfo_url(realm), headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_session_max_ends_without_a_doomed_refresh(
    kc: Keycloak, make_auth: Callable[..., DeviceAuth], approver: FormApprover
) -> None:
    auth = make_auth(SHORT_REALM)  # SSO Session Max 15 s, access tokens 5 s
    auth.get_token()
    cached = auth.cached_token()
    assert cached is not None and cached.refresh_expires_at is not None
    assert cached.refresh_expires_at - cached.obtained_at <= 15  # refresh_expires_in: the session's end
    unattended = make_auth(SHORT_REALM, interactive=False, prompt=None)
    deadline = time.monotonic() + 40
    with pytest.raises(LoginRequired, match="deviceauth login"):  # noqa: PT012 - the loop is what is tested
        while time.monotonic() < deadline:
            assert _userinfo(kc, SHORT_REALM, unattended.get_token()).status_code == 200
            time.sleep(0.5)
    events = kc.count(SHORT_REALM)
    print("Keycloak events:", events)
    assert events.get("REFRESH_TOKEN", 0) >= 1  # it did refresh while the session lived
    assert events.get("REFRESH_TOKEN_ERROR", 0) == 0  # and never sent a refresh doomed to fail
    assert len(approver.codes) == 1

    # Interactively, the same situation is a new login (one more prompt), not an error.
    assert _userinfo(kc, SHORT_REALM, auth.get_token()).status_code == 200
    assert len(approver.codes) == 2
    assert kc.count(SHORT_REALM).get("REFRESH_TOKEN_ERROR", 0) == 0


def test_logout_revokes_at_keycloak(kc: Keycloak, make_auth: Callable[..., DeviceAuth]) -> None:
    auth = make_auth()
    auth.get_token()
    cached = auth.cached_token()
    assert cached is not None and cached.refresh_token
    result = auth.logout()
    assert result
    assert result.revoked
    assert auth.cached_token() is None
    refused = requests.post(
        kc.token_url(REALM),
        data={"grant_type": "refresh_token", "refresh_token": cached.refresh_token, "client_id": CLIENT_ID},
        timeout=10,
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert _userinfo(kc, REALM, cached.access_token).status_code == 401  # the session is gone too
    assert kc.count(REALM).get("REVOKE_GRANT", 0) >= 1


def test_keycloak_answers_slow_down_and_deviceauth_never_earns_one(
    kc: Keycloak, make_auth: Callable[..., DeviceAuth]
) -> None:
    # What Keycloak does with a client that polls faster than the interval it announced.
    issuer = kc.issuer(REALM)
    device = requests.post(
        f"{issuer}/protocol/openid-connect/auth/device", data={"client_id": CLIENT_ID, "scope": "openid"}, timeout=10
    ).json()
    assert device["interval"] == 1
    poll = {"grant_type": DEVICE_GRANT, "device_code": device["device_code"], "client_id": CLIENT_ID}
    first = requests.post(kc.token_url(REALM), data=poll, timeout=10)
    assert first.json()["error"] == "authorization_pending"
    answers = []
    for _ in range(5):  # at once, again and again: too fast (a few tries, in case the machine stalls)
        answers.append(requests.post(kc.token_url(REALM), data=poll, timeout=10).json())
        if answers[-1]["error"] == "slow_down":
            break
    assert answers[-1]["error"] == "slow_down", answers
    assert "interval" not in answers[-1]  # no new interval: the client adds 5 s (RFC 8628 §3.5)
    check_approved(walk(device["user_code"], device["verification_uri"]))
    after: list[tuple[int, str]] = []
    for _ in range(5):  # polling at the interval again is served (a few tries on a stalling machine)
        time.sleep(1.1)
        response = requests.post(kc.token_url(REALM), data=poll, timeout=10)
        after.append((response.status_code, response.json().get("error", "")))
        if response.status_code == 200:
            break
    assert after[-1][0] == 200, after
    kc.clear_events(REALM)

    # deviceauth waits the interval before every poll, so a slow approval earns no slow_down.
    approvals: list[threading.Thread] = []

    def approve_late(code: DeviceCode) -> None:
        def approve() -> None:
            time.sleep(3.5)  # a few polls go unanswered first
            FormApprover()(code)

        approvals.append(threading.Thread(target=approve, daemon=True))
        approvals[-1].start()

    auth = make_auth(prompt=approve_late)
    assert _userinfo(kc, REALM, auth.get_token()).status_code == 200
    events = kc.count(REALM)
    print("Keycloak events:", events)
    assert events.get("OAUTH2_DEVICE_CODE_TO_TOKEN_ERROR:slow_down", 0) == 0
    assert events.get("OAUTH2_DEVICE_CODE_TO_TOKEN", 0) == 1
    for thread in approvals:
        thread.join(timeout=30)


def test_offline_token_for_an_unattended_job(
    kc: Keycloak, make_auth: Callable[..., DeviceAuth], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = make_auth(scope="openid offline_access", cache=tmp_path / "person" / ".tokens.json")
    setup.get_token()
    person = setup.cached_token()
    assert person is not None and person.refresh_token
    kc.clear_events(REALM)

    monkeypatch.setenv("DEVICEAUTH_OFFLINE_TOKEN", person.refresh_token)
    job = make_auth(
        scope="openid offline_access", cache=tmp_path / "job" / ".tokens.json", interactive=False, prompt=None
    )
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while len(seen) < 3 and time.monotonic() < deadline:  # across two expiries
        token = job.get_token()
        assert _userinfo(kc, REALM, token).status_code == 200
        seen.add(token)
        time.sleep(0.5)
    events = kc.count(REALM)
    print("Keycloak events:", events)
    assert len(seen) == 3
    assert events.get("OAUTH2_DEVICE_CODE_TO_TOKEN", 0) == 0  # never a login
    assert events.get("REFRESH_TOKEN", 0) == 3  # each access token came from the offline token
    assert events.get("REFRESH_TOKEN_ERROR", 0) == 0
    assert person.refresh_token not in (tmp_path / "job" / ".tokens.json").read_text()


def test_session_ended_at_keycloak_costs_one_new_login(
    kc: Keycloak, make_auth: Callable[..., DeviceAuth], approver: FormApprover
) -> None:
    auth = make_auth()
    url = kc.userinfo_url(REALM)
    assert requests.get(url, auth=auth, timeout=10).status_code == 200
    kc.end_sessions(REALM, "alice")  # the token in memory is still "fresh" by the clock
    response = requests.get(url, auth=auth, timeout=10)  # 401 → refresh refused → new login → retried once
    assert response.status_code == 200
    assert len(approver.codes) == 2
    events = kc.count(REALM)
    print("Keycloak events:", events)
    assert events.get("USER_INFO_REQUEST_ERROR", 0) == 1  # the one 401
    assert events.get("REFRESH_TOKEN_ERROR", 0) <= 1  # at most one refresh, which could not have known
    assert events.get("OAUTH2_DEVICE_CODE_TO_TOKEN", 0) == 2
