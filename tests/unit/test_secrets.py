"""Token values never show up in logs (at DEBUG, every logger), reprs, error messages or tracebacks."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest
import requests
from deviceauth_fakes import (
    API_URL,
    CLIENT_ID,
    DEVICE_CODE,
    TOKEN_ENDPOINT,
    FakeAuthServer,
    FakeClock,
    make_auth,
    oauth_error,
)

from deviceauth import DeviceAuthError, DeviceCode, LoginRequired, TokenRejected
from deviceauth._oauth import OAuthClient

OFFLINE = "offline-SECRET-0000-oooo"


def test_no_token_value_is_ever_rendered(
    server: FakeAuthServer,
    clock: FakeClock,
    cache_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DEVICEAUTH_OFFLINE_TOKEN", raising=False)
    caplog.set_level(logging.DEBUG)
    api_tokens: list[str] = []
    api_statuses = [200, 200, 401, 200]

    def api(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        api_tokens.append(str(request.headers.get("Authorization")))
        return api_statuses.pop(0), {}, "ok"

    server.mock.add_callback("GET", API_URL, callback=api)
    shown: list[DeviceCode] = []
    rendered: list[str] = []
    errors: list[BaseException] = []

    # 1. a device login (one pending answer first)
    server.device(interval=2)
    server.token_answers.append(oauth_error("authorization_pending"))
    server.grant()
    auth = make_auth(cache_path, clock, interactive=True, prompt=shown.append)
    assert requests.get(API_URL, auth=auth, timeout=5).status_code == 200
    # 2. a refresh when the access token is due
    clock.advance(1000)
    server.grant()
    assert requests.get(API_URL, auth=auth, timeout=5).status_code == 200
    # 3. a 401 from the API: refresh and retry once
    server.grant()
    assert requests.get(API_URL, auth=auth, timeout=5).status_code == 200
    rendered += [repr(auth), str(auth), repr(auth.cached_token())]
    rendered += [repr(code) for code in shown]
    # 4. the refresh token is rejected, and no one may be asked: LoginRequired
    clock.advance(1000)
    server.token_answers.append(oauth_error("invalid_grant", description="Token is not active"))
    unattended = make_auth(cache_path, clock, interactive=False)
    with pytest.raises(LoginRequired) as login_required:
        unattended.get_token()
    errors.append(login_required.value)
    rendered.append(repr(unattended))
    # 5. a rejected offline token, and a rejected refresh straight from the client
    server.token_answers.append(oauth_error("invalid_grant", description="Offline session not active"))
    offline = make_auth(cache_path, clock, interactive=False, offline_token=OFFLINE)
    with pytest.raises(LoginRequired) as offline_rejected:
        offline.get_token()
    errors.append(offline_rejected.value)
    rendered += [repr(offline), repr(offline.__getstate__())]
    server.token_answers.append(oauth_error("invalid_grant"))
    client = OAuthClient(CLIENT_ID)
    with pytest.raises(TokenRejected) as rejected:
        client.refresh(TOKEN_ENDPOINT, server.issued[0]["refresh_token"])
    errors.append(rejected.value)

    secrets = [DEVICE_CODE, OFFLINE]
    for body in server.issued:
        secrets += [body["access_token"], body["refresh_token"], body["id_token"]]
    assert len(server.issued) == 3
    assert len(api_tokens) == 4  # the scenario really sent tokens
    for error in errors:
        assert isinstance(error, DeviceAuthError)
        rendered += [str(error), repr(error), "".join(traceback.format_exception(error))]
    deviceauth_debug = [r for r in caplog.records if r.name.startswith("deviceauth") and r.levelno == logging.DEBUG]
    assert deviceauth_debug, "nothing was logged at DEBUG; the scan below would prove nothing"
    texts = {"log": caplog.text, **{f"rendered[{i}]": text for i, text in enumerate(rendered)}}
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"{secret[:6]}... appears in {where}"
