"""Fault injection: 5xx before or after the work, delays, and how a client sees each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from oauth_calls import DEVICE_GRANT, api, login, refresh

from deviceauth import DeviceAuth
from deviceauth.testing import AuthServer, AutoApprover, Fault


def test_error_before_leaves_the_refresh_token_usable(server: AuthServer, http: requests.Session) -> None:
    tokens = login(http, server)
    server.inject_fault("error_before", grant_type="refresh_token", status=502)
    assert refresh(http, server, tokens["refresh_token"]) == (502, {
        "error": "server_error", "error_description": "injected fault"
    })  # fmt: skip
    status, rotated = refresh(http, server, tokens["refresh_token"])  # a retry is safe: nothing happened
    assert status == 200, rotated
    assert server.stats()["faults"] == {"error_before": 1}


def test_error_after_rotated_so_the_retry_is_reuse(server: AuthServer, http: requests.Session) -> None:
    tokens = login(http, server)
    server.inject_fault("error_after", grant_type="refresh_token")
    assert refresh(http, server, tokens["refresh_token"])[0] == 503
    # The server rotated; the client never saw the new token. Its retry looks like reuse.
    assert refresh(http, server, tokens["refresh_token"])[1]["error"] == "invalid_grant"
    assert server.stats()["reuse_detected"] == 1
    assert api(http, server, tokens["access_token"]).status_code == 401


def test_faults_match_their_endpoint_and_grant_and_count_down(server: AuthServer, http: requests.Session) -> None:
    server.inject_fault("error_before", grant_type="refresh_token", count=2)
    tokens = login(http, server)  # device-code polls are not hit
    assert [refresh(http, server, tokens["refresh_token"])[0] for _ in range(3)] == [503, 503, 200]
    server.inject_fault("delay", endpoint="api", seconds=0.2)
    assert api(http, server, tokens["access_token"]).status_code == 200  # delayed, then answered as usual
    server.inject_fault("error_before", endpoint="discovery")
    assert http.get(f"{server.issuer}/.well-known/openid-configuration").status_code == 503
    server.inject_fault("error_before", endpoint="api")
    server.clear_faults()
    assert http.get(server.api_url("me")).status_code == 401  # no fault left: the usual answer
    assert server.stats()["faults"] == {"error_before": 3, "delay": 1}
    assert server.stats()["token"] == {DEVICE_GRANT: 1, "refresh_token": 3}


def test_device_login_rides_out_server_errors(server: AuthServer, tmp_path: Path) -> None:
    server.inject_fault("error_before", grant_type=DEVICE_GRANT, count=2)
    auth = DeviceAuth(
        server.issuer, server.client_id, scope="openid", cache=tmp_path / ".tokens.json",
        prompt=AutoApprover(server), interactive=True, open_browser=False,
    )  # fmt: skip
    assert auth.get_token()
    assert server.stats()["faults"] == {"error_before": 2}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "explode"}, "fault kind"),
        ({"kind": "delay", "endpoint": "nowhere"}, "fault endpoint"),
        ({"kind": "error_before", "status": 404}, "5xx"),
        ({"kind": "delay", "seconds": 600}, "seconds"),
    ],
)
def test_bad_faults_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fault(**options)  # type: ignore[arg-type]


def test_faults_over_http(make_server: Callable[..., AuthServer], http: requests.Session) -> None:
    server = make_server()
    added = http.post(f"{server.base_url}/__test/faults", json={"kind": "error_before", "endpoint": "api"})
    assert added.status_code == 200
    assert http.get(server.api_url("me")).status_code == 503
    bad = http.post(f"{server.base_url}/__test/faults", json={"kind": "nope"})
    assert bad.status_code == 400
    assert http.delete(f"{server.base_url}/__test/faults").json() == {"cleared": True}
