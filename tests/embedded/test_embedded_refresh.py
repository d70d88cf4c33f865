"""Refresh on the embedded server: rotation, reuse detection, session maximum, expiry, revocation, races."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests
from oauth_calls import PUBLIC, api, login, refresh

from deviceauth.testing import AuthServer


def test_rotation_and_reuse_revokes_the_whole_login(server: AuthServer, http: requests.Session) -> None:
    tokens = login(http, server)
    status, rotated = refresh(http, server, tokens["refresh_token"])
    assert status == 200, rotated
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert api(http, server, rotated["access_token"]).status_code == 200

    # The consumed token comes back: the login is revoked, new tokens included.
    assert refresh(http, server, tokens["refresh_token"])[1]["error"] == "invalid_grant"
    assert refresh(http, server, rotated["refresh_token"])[1]["error"] == "invalid_grant"
    assert api(http, server, rotated["access_token"]).status_code == 401
    assert server.stats()["reuse_detected"] == 1
    issued = server.tokens()
    assert len(issued) == 4  # two access and two refresh tokens, one family
    assert all(entry["revoked"] for entry in issued)
    assert len({entry["family"] for entry in issued}) == 1


def test_without_rotation_the_refresh_token_stays(
    make_server: Callable[..., AuthServer], http: requests.Session
) -> None:
    server = make_server(rotate_refresh_tokens=False)
    tokens = login(http, server)
    for _ in range(2):
        status, body = refresh(http, server, tokens["refresh_token"])
        assert status == 200, body
        assert "refresh_token" not in body


def test_without_reuse_detection_only_the_old_token_fails(
    make_server: Callable[..., AuthServer], http: requests.Session
) -> None:
    server = make_server(reuse_detection=False)
    tokens = login(http, server)
    rotated = refresh(http, server, tokens["refresh_token"])[1]
    assert refresh(http, server, tokens["refresh_token"])[1]["error"] == "invalid_grant"
    assert refresh(http, server, rotated["refresh_token"])[0] == 200
    assert server.stats()["reuse_detected"] == 0


def test_session_maximum_ends_refreshing(make_server: Callable[..., AuthServer], http: requests.Session) -> None:
    server = make_server(mode="keycloak", session_max=2, refresh_ttl=3600)
    tokens = login(http, server)
    assert tokens["refresh_expires_in"] <= 2  # capped by the session, not the refresh token's own life
    (rt,) = [entry for entry in server.tokens() if entry["kind"] == "refresh_token"]
    time.sleep(max(0.0, rt["expires_at"] - time.time()) + 0.05)
    assert refresh(http, server, tokens["refresh_token"])[1]["error"] == "invalid_grant"


def test_whole_second_expiry(make_server: Callable[..., AuthServer], http: requests.Session) -> None:
    server = make_server(access_ttl=1)
    tokens = login(http, server)
    (at,) = [entry for entry in server.tokens() if entry["kind"] == "access_token"]
    assert isinstance(at["expires_at"], int)
    assert at["expires_at"] - at["issued_at"] == tokens["expires_in"] == 1
    assert api(http, server, tokens["access_token"]).status_code == 200
    time.sleep(max(0.0, at["expires_at"] - time.time()) + 0.05)
    expired = api(http, server, tokens["access_token"])
    assert expired.status_code == 401
    assert expired.headers["WWW-Authenticate"] == 'Bearer realm="deviceauth", error="invalid_token"'
    missing = http.get(server.api_url("me"), timeout=10)
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="deviceauth"'  # RFC 6750: no error without a token
    assert server.stats()["api"] == {"ok": 1, "unauthorized": 2, "redirect": 0}


def test_32_threads_racing_one_refresh_token_rotate_it_once(server: AuthServer) -> None:
    with requests.Session() as setup:
        setup.trust_env = False
        tokens = login(setup, server)
    server.reset_stats()

    def race(_: int) -> int:
        with requests.Session() as http:
            http.trust_env = False
            return refresh(http, server, tokens["refresh_token"])[0]

    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(race, range(32)))
    assert statuses.count(200) == 1  # the store's lock makes rotation atomic
    assert statuses.count(400) == 31
    assert server.stats()["token"] == {"refresh_token": 32}
    assert server.stats()["reuse_detected"] == 1  # the first replay revoked the login


def test_revoking_a_refresh_token_ends_the_login(server: AuthServer, http: requests.Session) -> None:
    tokens = login(http, server)
    response = http.post(server.urls.revocation, data={"client_id": PUBLIC, "token": tokens["refresh_token"]})
    assert response.status_code == 200
    assert api(http, server, tokens["access_token"]).status_code == 401  # RFC 7009 2.1: its access tokens go too
    assert refresh(http, server, tokens["refresh_token"])[1]["error"] == "invalid_grant"
    assert server.stats()["revocation"] == 1


def test_revoking_an_access_token_keeps_the_refresh_token(server: AuthServer, http: requests.Session) -> None:
    tokens = login(http, server)
    data = {"client_id": PUBLIC, "token": tokens["access_token"], "token_type_hint": "access_token"}
    assert http.post(server.urls.revocation, data=data).status_code == 200
    assert api(http, server, tokens["access_token"]).status_code == 401
    assert refresh(http, server, tokens["refresh_token"])[0] == 200
    unknown = http.post(server.urls.revocation, data={"client_id": PUBLIC, "token": "never-issued"})
    assert unknown.status_code == 200  # RFC 7009: nothing to say about unknown tokens


def test_another_client_cannot_use_or_revoke_the_tokens(server: AuthServer, http: requests.Session) -> None:
    tokens = login(http, server)
    client_id, secret = server.confidential_client
    stolen = http.post(
        server.urls.token, data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(client_id, secret),
    )  # fmt: skip
    assert stolen.json()["error"] == "invalid_grant"
    revoke = http.post(server.urls.revocation, data={"token": tokens["refresh_token"]}, auth=(client_id, secret))
    assert revoke.status_code == 400
    assert refresh(http, server, tokens["refresh_token"])[0] == 200
