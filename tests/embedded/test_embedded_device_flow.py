"""The embedded server's device flow (RFC 8628): codes, polling answers, approval, clients, scopes."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import pytest
import requests
from oauth_calls import DEVICE_GRANT, PUBLIC, api, poll, start, token

from deviceauth.testing import AuthServer, ControlError


def test_pending_then_approved_then_single_use(server: AuthServer, http: requests.Session) -> None:
    flow = start(http, server)
    assert flow["interval"] == 1
    assert flow["expires_in"] == 600
    assert flow["verification_uri"] == f"{server.issuer}/device"
    assert flow["verification_uri_complete"] == f"{server.issuer}/device?user_code={flow['user_code']}"

    assert poll(http, server, flow["device_code"]) == (400, {"error": "authorization_pending"})
    server.approve(flow["user_code"].lower().replace("-", " "), account_id="bob")  # however the person types it
    status, tokens = poll(http, server, flow["device_code"])
    assert status == 200, tokens
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 60
    assert tokens["scope"] == "openid"
    assert tokens["refresh_token"] and tokens["access_token"] != tokens["refresh_token"]
    assert "refresh_expires_in" not in tokens  # plain mode

    payload = b'{"hello": "world"}'
    echo = http.put(
        server.api_url("echo"), data=payload, headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    ).json()
    assert (echo["sub"], echo["client_id"], echo["method"], echo["path"]) == ("bob", PUBLIC, "PUT", "/api/echo")
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert echo["token_sha256"] == hashlib.sha256(tokens["access_token"].encode()).hexdigest()

    assert poll(http, server, flow["device_code"])[1]["error"] == "invalid_grant"  # a device code is redeemed once
    stats = server.stats()
    assert stats["device_authorization"] == 1
    assert stats["token"] == {DEVICE_GRANT: 3}
    assert stats["token_errors"] == {"authorization_pending": 1, "invalid_grant": 1}
    assert stats["api"] == {"ok": 1, "unauthorized": 0, "redirect": 0}


def test_keycloak_mode(make_server: Callable[..., AuthServer], http: requests.Session) -> None:
    server = make_server(mode="keycloak", realm="acme", refresh_ttl=1800)
    assert server.issuer == f"{server.base_url}/realms/acme"
    oidc = f"{server.issuer}/protocol/openid-connect"
    assert server.urls.device_authorization == f"{oidc}/auth/device"
    assert server.urls.token == f"{oidc}/token"
    assert server.urls.revocation == f"{oidc}/revoke"
    flow = start(http, server)
    server.approve(flow["user_code"])
    tokens = poll(http, server, flow["device_code"])[1]
    assert 1799 <= tokens["refresh_expires_in"] <= 1800
    assert tokens["not-before-policy"] == 0


def test_deny_and_what_the_control_calls_refuse(server: AuthServer, http: requests.Session) -> None:
    flow = start(http, server)
    server.deny(flow["user_code"])
    assert poll(http, server, flow["device_code"])[1]["error"] == "access_denied"
    with pytest.raises(ControlError) as again:
        server.approve(flow["user_code"])
    assert again.value.status == 409
    with pytest.raises(ControlError) as unknown:
        server.approve("BCDF-GHJK")
    assert unknown.value.status == 404


def test_expired_code(make_server: Callable[..., AuthServer], http: requests.Session) -> None:
    server = make_server(device_ttl=1)
    flow = start(http, server)
    assert flow["expires_in"] == 1
    time.sleep(1.1)
    assert poll(http, server, flow["device_code"])[1]["error"] == "expired_token"
    with pytest.raises(ControlError) as late:
        server.approve(flow["user_code"])
    assert late.value.status == 409


def test_forced_slow_down_counts_per_code_even_when_approved(
    make_server: Callable[..., AuthServer], http: requests.Session
) -> None:
    server = make_server(slow_down=1)
    flow = start(http, server)
    server.approve(flow["user_code"])
    assert poll(http, server, flow["device_code"])[1]["error"] == "slow_down"
    assert poll(http, server, flow["device_code"])[0] == 200
    second = start(http, server)
    assert poll(http, server, second["device_code"])[1]["error"] == "slow_down"
    assert server.stats()["token_errors"] == {"slow_down": 2}


def test_enforced_interval_adds_five_seconds(make_server: Callable[..., AuthServer], http: requests.Session) -> None:
    server = make_server(interval=1, enforce_interval=True)
    flow = start(http, server)
    assert poll(http, server, flow["device_code"])[1]["error"] == "authorization_pending"
    assert poll(http, server, flow["device_code"])[1]["error"] == "slow_down"  # no wait at all
    time.sleep(1.2)  # the old interval: too soon now that it is 6 s
    assert poll(http, server, flow["device_code"])[1]["error"] == "slow_down"


def test_auto_approve(make_server: Callable[..., AuthServer], http: requests.Session) -> None:
    now = make_server(auto_approve=0, auto_approve_user="robot")
    flow = start(http, now)
    status, tokens = poll(http, now, flow["device_code"])
    assert status == 200
    assert api(http, now, tokens["access_token"]).json()["sub"] == "robot"
    later = make_server(auto_approve=60)
    assert poll(http, later, start(http, later)["device_code"])[1]["error"] == "authorization_pending"


def test_confidential_client_basic_post_and_wrong_secret(server: AuthServer, http: requests.Session) -> None:
    client_id, secret = server.confidential_client
    for style in ("basic", "post"):
        auth = (client_id, secret) if style == "basic" else None
        extra = {} if style == "basic" else {"client_id": client_id, "client_secret": secret}
        response = http.post(server.urls.device_authorization, data={"scope": "openid api", **extra}, auth=auth)
        assert response.status_code == 200, (style, response.text)
        flow = response.json()
        server.approve(flow["user_code"])
        done = http.post(
            server.urls.token, data={"grant_type": DEVICE_GRANT, "device_code": flow["device_code"], **extra}, auth=auth
        )
        assert done.status_code == 200, (style, done.text)
        assert api(http, server, done.json()["access_token"]).json()["client_id"] == client_id
    wrong = http.post(server.urls.device_authorization, data={"scope": "openid"}, auth=(client_id, "wrong"))
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    # A confidential client cannot pass as a public one by leaving its secret out.
    bare = http.post(server.urls.device_authorization, data={"client_id": client_id, "scope": "openid"})
    assert bare.json()["error"] == "invalid_client"


def test_unknown_client_scope_and_grant(server: AuthServer, http: requests.Session) -> None:
    nobody = http.post(server.urls.device_authorization, data={"client_id": "nobody"})
    assert nobody.json()["error"] == "invalid_client"
    scope = http.post(server.urls.device_authorization, data={"client_id": PUBLIC, "scope": "openid admin"})
    assert scope.json()["error"] == "invalid_scope"
    assert token(http, server, {"grant_type": "password"})[1]["error"] == "unsupported_grant_type"
    repeated = http.post(server.urls.token, data=[("grant_type", DEVICE_GRANT), ("grant_type", DEVICE_GRANT)])
    assert repeated.json()["error"] == "invalid_request"
