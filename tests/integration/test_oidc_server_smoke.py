"""Smoke tests for the oidc-provider test server itself (no deviceauth import).

They pin down the server behaviour the library's integration tests rely on: endpoint paths in
both modes, RFC 8628 error codes (authorization_pending, slow_down, access_denied,
expired_token), refresh token rotation with reuse detection, short access-token TTLs, and the
/__test hooks and counters.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from oidc_server import OidcServer, OidcServerError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PUBLIC_CLIENT = "client-tools"


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_server() -> Iterator[OidcServer]:
    with OidcServer(mode="plain") as server:
        yield server


@pytest.fixture(scope="module")
def keycloak_server() -> Iterator[OidcServer]:
    with OidcServer(mode="keycloak") as server:
        yield server


@pytest.fixture(params=["plain", "keycloak"])
def server(request: pytest.FixtureRequest) -> OidcServer:
    fixture = "plain_server" if request.param == "plain" else "keycloak_server"
    srv: OidcServer = request.getfixturevalue(fixture)
    srv.reset_stats()
    return srv


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # loopback only; ignore any proxy settings
        yield session


# -- helpers -------------------------------------------------------------------------------------


def discover(http: requests.Session, server: OidcServer) -> dict[str, Any]:
    response = http.get(f"{server.issuer}/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def start_device_flow(
    http: requests.Session, server: OidcServer, scope: str = "openid", client_id: str = PUBLIC_CLIENT
) -> dict[str, Any]:
    endpoint = discover(http, server)["device_authorization_endpoint"]
    response = http.post(endpoint, data={"client_id": client_id, "scope": scope}, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def token_request(http: requests.Session, server: OidcServer, data: dict[str, str]) -> tuple[int, dict[str, Any]]:
    endpoint = discover(http, server)["token_endpoint"]
    response = http.post(endpoint, data={"client_id": PUBLIC_CLIENT, **data}, timeout=10)
    body: dict[str, Any] = response.json()
    return response.status_code, body


def poll(http: requests.Session, server: OidcServer, device_code: str) -> tuple[int, dict[str, Any]]:
    return token_request(http, server, {"grant_type": DEVICE_GRANT, "device_code": device_code})


def refresh(http: requests.Session, server: OidcServer, refresh_token: str) -> tuple[int, dict[str, Any]]:
    return token_request(http, server, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def login(http: requests.Session, server: OidcServer) -> dict[str, Any]:
    flow = start_device_flow(http, server)
    server.approve(flow["user_code"])
    status, tokens = poll(http, server, flow["device_code"])
    assert status == 200, tokens
    return tokens


# -- discovery -----------------------------------------------------------------------------------


def test_plain_discovery(plain_server: OidcServer, http: requests.Session) -> None:
    base = plain_server.base_url
    assert plain_server.issuer == base
    doc = discover(http, plain_server)
    assert doc["issuer"] == base
    assert doc["device_authorization_endpoint"] == f"{base}/device/auth"
    assert doc["token_endpoint"] == f"{base}/token"
    assert doc["revocation_endpoint"] == f"{base}/token/revocation"
    assert DEVICE_GRANT in doc["grant_types_supported"]
    oauth = http.get(f"{base}/.well-known/oauth-authorization-server", timeout=10)
    assert oauth.status_code == 200
    assert oauth.json()["device_authorization_endpoint"] == f"{base}/device/auth"


def test_keycloak_discovery(keycloak_server: OidcServer, http: requests.Session) -> None:
    issuer = keycloak_server.issuer
    assert issuer == f"{keycloak_server.base_url}/auth/realms/rrap"
    doc = discover(http, keycloak_server)
    oidc = f"{issuer}/protocol/openid-connect"
    assert doc["issuer"] == issuer
    assert doc["device_authorization_endpoint"] == f"{oidc}/auth/device"
    assert doc["token_endpoint"] == f"{oidc}/token"
    assert doc["revocation_endpoint"] == f"{oidc}/revoke"
    assert doc["jwks_uri"] == f"{oidc}/certs"
    assert doc["userinfo_endpoint"] == f"{oidc}/userinfo"
    assert doc["authorization_endpoint"] == f"{oidc}/auth"
    assert doc["introspection_endpoint"] == f"{oidc}/token/introspect"
    flow = start_device_flow(http, keycloak_server)
    assert flow["verification_uri"] == f"{issuer}/device"
    # Nothing of the provider is served outside the realm path.
    outside = http.get(f"{keycloak_server.base_url}/.well-known/openid-configuration", timeout=10)
    assert outside.status_code == 404


def test_no_oidc_discovery_flag(http: requests.Session) -> None:
    with OidcServer(extra_args=["--no-discovery-oidc"]) as server:
        oidc = http.get(f"{server.issuer}/.well-known/openid-configuration", timeout=10)
        assert oidc.status_code == 404
        oauth = http.get(f"{server.issuer}/.well-known/oauth-authorization-server", timeout=10)
        assert oauth.status_code == 200
        assert oauth.json()["device_authorization_endpoint"] == f"{server.base_url}/device/auth"
        assert server.stats()["discovery"] == 2


# -- device flow ---------------------------------------------------------------------------------


def test_full_device_flow(server: OidcServer, http: requests.Session) -> None:
    flow = start_device_flow(http, server)
    assert flow["interval"] == 1
    assert flow["expires_in"] == 600
    assert flow["verification_uri_complete"].endswith(f"?user_code={flow['user_code']}")

    status, body = poll(http, server, flow["device_code"])
    assert (status, body["error"]) == (400, "authorization_pending")

    # The hook accepts the code however the user might type it.
    server.approve(flow["user_code"].lower().replace("-", " "), account_id="bob")
    status, tokens = poll(http, server, flow["device_code"])
    assert status == 200, tokens
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 60
    assert tokens["refresh_token"]
    assert tokens["id_token"]
    assert tokens["scope"] == "openid"
    if server.mode == "keycloak":
        assert 3590 <= tokens["refresh_expires_in"] <= 3600
    else:
        assert "refresh_expires_in" not in tokens

    payload = b'{"hello": "world"}'
    api = http.put(
        server.api_url("things/1"),
        data=payload,
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert api.status_code == 200, api.text
    echo = api.json()
    assert echo["sub"] == "bob"
    assert echo["method"] == "PUT"
    assert echo["path"] == "/api/things/1"
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert echo["body_length"] == len(payload)

    # The device code is single use.
    status, body = poll(http, server, flow["device_code"])
    assert (status, body["error"]) == (400, "invalid_grant")

    assert server.stats() == {
        "device_authorization": 1,
        "token": {DEVICE_GRANT: 3},
        "token_errors": {"authorization_pending": 1, "invalid_grant": 1},
        "revocation": 0,
        "discovery": 4,
        "api": {"ok": 1, "unauthorized": 0, "redirect": 0},
    }


def test_confidential_client(plain_server: OidcServer, http: requests.Session) -> None:
    doc = discover(http, plain_server)
    auth = ("confidential-client", "confidential-secret")
    flow = http.post(doc["device_authorization_endpoint"], data={"scope": "openid api"}, auth=auth, timeout=10).json()
    plain_server.approve(flow["user_code"])
    response = http.post(
        doc["token_endpoint"],
        data={"grant_type": DEVICE_GRANT, "device_code": flow["device_code"]},
        auth=auth,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "openid api"
    bad = http.post(
        doc["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": response.json()["refresh_token"]},
        auth=("confidential-client", "wrong"),
        timeout=10,
    )
    assert (bad.status_code, bad.json()["error"]) == (401, "invalid_client")


def test_slow_down(http: requests.Session) -> None:
    with OidcServer(slow_down=1) as server:
        flow = start_device_flow(http, server)
        status, body = poll(http, server, flow["device_code"])
        assert (status, body["error"]) == (400, "slow_down")
        status, body = poll(http, server, flow["device_code"])
        assert (status, body["error"]) == (400, "authorization_pending")
        server.approve(flow["user_code"])
        status, tokens = poll(http, server, flow["device_code"])
        assert status == 200, tokens
        assert tokens["refresh_token"]
        # Counted per device code: a new one starts with slow_down again.
        second = start_device_flow(http, server)
        assert poll(http, server, second["device_code"])[1]["error"] == "slow_down"
        stats = server.stats()
        assert stats["token"] == {DEVICE_GRANT: 4}
        assert stats["token_errors"] == {"slow_down": 2, "authorization_pending": 1}


def test_deny(server: OidcServer, http: requests.Session) -> None:
    flow = start_device_flow(http, server)
    server.deny(flow["user_code"])
    status, body = poll(http, server, flow["device_code"])
    assert (status, body["error"]) == (400, "access_denied")
    with pytest.raises(OidcServerError) as info:
        server.approve(flow["user_code"])
    assert info.value.status == 409


def test_unknown_user_code(plain_server: OidcServer) -> None:
    with pytest.raises(OidcServerError) as info:
        plain_server.approve("XXXX-XXXX")
    assert info.value.status == 404


def test_device_code_expiry(http: requests.Session) -> None:
    with OidcServer(mode="keycloak", device_ttl=2) as server:
        flow = start_device_flow(http, server)
        assert flow["expires_in"] == 2
        time.sleep(3)
        status, body = poll(http, server, flow["device_code"])
        assert (status, body["error"]) == (400, "expired_token")
        with pytest.raises(OidcServerError) as info:
            server.approve(flow["user_code"])
        assert info.value.status == 409


# -- refresh -------------------------------------------------------------------------------------


def test_refresh_rotates_and_reuse_revokes_grant(server: OidcServer, http: requests.Session) -> None:
    tokens = login(http, server)
    first_rt = tokens["refresh_token"]

    status, rotated = refresh(http, server, first_rt)
    assert status == 200, rotated
    second_rt = rotated["refresh_token"]
    assert second_rt != first_rt
    assert rotated["access_token"] != tokens["access_token"]
    if server.mode == "keycloak":
        assert 3590 <= rotated["refresh_expires_in"] <= 3600

    # Replaying the consumed token is detected, and the whole grant goes with it.
    status, body = refresh(http, server, first_rt)
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body = refresh(http, server, second_rt)
    assert (status, body["error"]) == (400, "invalid_grant")
    api = http.get(server.api_url(), headers={"Authorization": f"Bearer {rotated['access_token']}"}, timeout=10)
    assert api.status_code == 401

    stats = server.stats()
    assert stats["token"] == {DEVICE_GRANT: 1, "refresh_token": 3}
    assert stats["token_errors"] == {"invalid_grant": 2}


def test_refresh_without_offline_access_and_with_it(plain_server: OidcServer, http: requests.Session) -> None:
    for scope in ("openid", "openid offline_access", "api"):
        flow = start_device_flow(http, plain_server, scope=scope)
        plain_server.approve(flow["user_code"])
        status, tokens = poll(http, plain_server, flow["device_code"])
        assert status == 200, tokens
        assert tokens["refresh_token"], scope
        assert ("id_token" in tokens) == ("openid" in scope)


def test_revoke_all(server: OidcServer, http: requests.Session) -> None:
    tokens = login(http, server)
    server.revoke_all()
    status, body = refresh(http, server, tokens["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
    api = http.get(server.api_url(), headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10)
    assert api.status_code == 401


def test_revocation_endpoint(server: OidcServer, http: requests.Session) -> None:
    tokens = login(http, server)
    endpoint = discover(http, server)["revocation_endpoint"]
    response = http.post(endpoint, data={"client_id": PUBLIC_CLIENT, "token": tokens["refresh_token"]}, timeout=10)
    assert response.status_code == 200
    status, body = refresh(http, server, tokens["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
    assert server.stats()["revocation"] == 1


# -- protected resource --------------------------------------------------------------------------


def test_access_token_expiry(http: requests.Session) -> None:
    with OidcServer(access_ttl=2) as server:
        tokens = login(http, server)
        assert tokens["expires_in"] == 2
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert http.get(server.api_url(), headers=headers, timeout=10).status_code == 200
        time.sleep(2.2)
        expired = http.get(server.api_url(), headers=headers, timeout=10)
        assert expired.status_code == 401
        assert expired.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        # The refresh token outlives it.
        status, rotated = refresh(http, server, tokens["refresh_token"])
        assert status == 200, rotated
        fresh = {"Authorization": f"Bearer {rotated['access_token']}"}
        assert http.get(server.api_url(), headers=fresh, timeout=10).status_code == 200
        assert server.stats()["api"] == {"ok": 2, "unauthorized": 1, "redirect": 0}


def test_api_without_token(plain_server: OidcServer, http: requests.Session) -> None:
    plain_server.reset_stats()
    response = http.post(plain_server.api_url("x"), data=b"abc", timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    bogus = http.get(plain_server.api_url(), headers={"Authorization": "Bearer nope"}, timeout=10)
    assert bogus.status_code == 401
    assert plain_server.stats()["api"] == {"ok": 0, "unauthorized": 2, "redirect": 0}


def test_redirects(plain_server: OidcServer, http: requests.Session) -> None:
    same = http.get(plain_server.api_url("redirect-same"), params={"to": "/api/x"}, allow_redirects=False, timeout=10)
    assert same.status_code == 302
    assert same.headers["Location"] == f"{plain_server.base_url}/api/x"
    cross = http.get(plain_server.api_url("redirect-cross"), params={"to": "/api/y"}, allow_redirects=False, timeout=10)
    assert cross.status_code == 302
    assert cross.headers["Location"] == f"http://localhost:{plain_server.port}/api/y"


def test_server_exits_when_stdin_closes() -> None:
    server = OidcServer()
    server.start()
    proc = server._proc
    assert proc is not None
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=5) == 0
    server.stop()


# -- browser -------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("mode", ["plain", "keycloak"])
def test_browser_approval(mode: str, http: requests.Session) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from browser_approve import approve_in_browser, chromium_available

    if not chromium_available():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    server = OidcServer(mode=mode)
    with server:
        flow = start_device_flow(http, server, scope="openid profile")
        started = time.monotonic()
        approve_in_browser(flow["verification_uri_complete"], username="carol")
        elapsed = time.monotonic() - started
        status, tokens = poll(http, server, flow["device_code"])
        assert status == 200, tokens
        assert tokens["refresh_token"]
        api = http.get(server.api_url(), headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10)
        assert api.json()["sub"] == "carol"
        # A browser login binds tokens to the server session; refresh must still work.
        status, rotated = refresh(http, server, tokens["refresh_token"])
        assert status == 200, rotated
        assert elapsed < 20
