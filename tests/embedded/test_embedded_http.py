"""The embedded server over HTTP: discovery, binding, the control surface, the verification page, bodies."""

from __future__ import annotations

import multiprocessing
import re
from collections.abc import Callable

import pytest
import requests
from oauth_calls import DEVICE_GRANT, api, login, poll, start

from deviceauth.testing import AuthServer

FORK = multiprocessing.get_context("fork")


# -- discovery -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["plain", "keycloak"])
def test_discovery_documents(make_server: Callable[..., AuthServer], http: requests.Session, mode: str) -> None:
    server = make_server(mode=mode)
    path = "/realms/rrap" if mode == "keycloak" else ""
    urls = [
        f"{server.issuer}/.well-known/openid-configuration",
        f"{server.base_url}/.well-known/oauth-authorization-server{path}",  # RFC 8414's own form
        f"{server.issuer}/.well-known/oauth-authorization-server",
    ]
    documents = [http.get(url).json() for url in urls]
    assert documents[0] == documents[1] == documents[2] == server.metadata()
    doc = documents[0]
    assert doc["issuer"] == server.issuer
    assert doc["device_authorization_endpoint"] == server.urls.device_authorization
    assert doc["token_endpoint"] == server.urls.token
    assert doc["revocation_endpoint"] == server.urls.revocation
    assert DEVICE_GRANT in doc["grant_types_supported"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {"none", "client_secret_basic", "client_secret_post"}
    assert http.get(doc["jwks_uri"]).json() == {"keys": []}
    if mode == "keycloak":
        assert http.get(f"{server.base_url}/.well-known/openid-configuration").status_code == 404
    assert server.stats()["discovery"] == 3 + (mode == "keycloak")


def test_discovery_and_device_flow_can_be_switched_off(
    make_server: Callable[..., AuthServer], http: requests.Session
) -> None:
    rfc8414_only = make_server(oidc_discovery=False)
    assert http.get(f"{rfc8414_only.issuer}/.well-known/openid-configuration").status_code == 404
    assert http.get(f"{rfc8414_only.issuer}/.well-known/oauth-authorization-server").status_code == 200
    no_device = make_server(device_flow=False)
    assert "device_authorization_endpoint" not in no_device.metadata()
    assert DEVICE_GRANT not in no_device.metadata()["grant_types_supported"]
    assert http.post(no_device.urls.device_authorization, data={"client_id": "client-tools"}).status_code == 404


# -- binding -------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.org"])  # noqa: S104 (refused, never bound)
def test_refuses_to_listen_beyond_loopback_unless_allowed(host: str) -> None:
    with pytest.raises(ValueError, match="allow_remote"):
        AuthServer(host=host)


def test_loopback_names_are_fine(http: requests.Session) -> None:
    with AuthServer(host="localhost") as server:
        assert server.issuer.startswith("http://localhost:")
        assert http.get(f"{server.issuer}/.well-known/openid-configuration").status_code == 200
    try:
        ipv6 = AuthServer(host="::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert ipv6.issuer.startswith("http://[::1]:")
        assert http.get(f"{ipv6.issuer}/.well-known/openid-configuration").status_code == 200
    finally:
        ipv6.stop()


def test_stop_closes_kept_alive_connections(http: requests.Session) -> None:
    server = AuthServer().start()
    assert http.get(server.api_url("me")).status_code == 401  # a keep-alive connection is now open
    server.stop()
    with pytest.raises(requests.ConnectionError):
        http.get(server.api_url("me"), timeout=5)


# -- control surface -----------------------------------------------------------------------------


def test_control_surface_over_http(server: AuthServer, http: requests.Session) -> None:
    control = f"{server.base_url}/__test"
    flow = start(http, server)
    assert http.get(f"{control}/pending").json()["pending"][0]["user_code"] == flow["user_code"]
    assert http.post(f"{control}/approve", json={"user_code": flow["user_code"], "account_id": "dora"}).json() == {
        "approved": True, "account_id": "dora", "scope": "openid"
    }  # fmt: skip
    tokens = poll(http, server, flow["device_code"])[1]
    listing = http.get(f"{control}/tokens")
    assert tokens["access_token"] not in listing.text and tokens["refresh_token"] not in listing.text
    assert {entry["kind"] for entry in listing.json()["tokens"]} == {"access_token", "refresh_token"}
    assert http.get(f"{control}/stats").json()["device_authorization"] == 1
    assert http.post(f"{control}/reset").json() == {"reset": True}
    assert http.post(f"{control}/revoke-all").json() == {"revoked": 1}
    assert api(http, server, tokens["access_token"]).status_code == 401
    assert http.post(f"{control}/approve", json={"user_code": "XXXX-XXXX"}).status_code == 404
    assert http.get(f"{control}/nothing").status_code == 404


def test_control_surface_refuses_browsers_and_can_be_off(
    make_server: Callable[..., AuthServer], http: requests.Session
) -> None:
    server = make_server()
    flow = start(http, server)
    approve = f"{server.base_url}/__test/approve"
    # A form post from a web page (no JSON content type), or a request for another host name
    # (DNS rebinding), must not approve anything.
    assert http.post(approve, data=f'{{"user_code": "{flow["user_code"]}"}}').status_code == 415
    assert (
        http.post(approve, json={"user_code": flow["user_code"]}, headers={"Host": "evil.example"}).status_code == 403
    )
    assert server.pending()[0]["user_code"] == flow["user_code"]
    off = make_server(control=False)
    assert http.get(f"{off.base_url}/__test/stats").status_code == 404


def test_a_forked_child_drives_the_parents_server(server: AuthServer, http: requests.Session) -> None:
    flow = start(http, server)
    child = FORK.Process(target=server.approve, args=(flow["user_code"], "from-child"))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    status, tokens = poll(http, server, flow["device_code"])
    assert status == 200
    assert api(http, server, tokens["access_token"]).json()["sub"] == "from-child"


# -- verification page ---------------------------------------------------------------------------


def _form_token(html: str) -> str:
    match = re.search(r'name=form_token value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def test_verification_page_approve(server: AuthServer, http: requests.Session) -> None:
    flow = start(http, server, scope="openid profile")
    entry = http.get(flow["verification_uri"])
    assert entry.status_code == 200
    assert "Enter the code" in entry.text
    assert entry.headers["X-Frame-Options"] == "DENY"
    review = http.get(flow["verification_uri"], params={"user_code": flow["user_code"].lower()})
    assert flow["user_code"] in review.text
    assert "client-tools" in review.text and "Client tools (public)" in review.text
    assert "<code>openid</code>" in review.text and "<code>profile</code>" in review.text
    done = http.post(flow["verification_uri"], data={
        "user_code": flow["user_code"], "form_token": _form_token(review.text), "username": "carol",
        "decision": "approve",
    })  # fmt: skip
    assert done.status_code == 200
    assert "Signed in as carol" in done.text
    tokens = poll(http, server, flow["device_code"])[1]
    assert api(http, server, tokens["access_token"]).json()["sub"] == "carol"


def test_verification_page_deny_and_refusals(server: AuthServer, http: requests.Session) -> None:
    flow = start(http, server)
    review = http.get(flow["verification_uri_complete"])
    form = {"user_code": flow["user_code"], "form_token": _form_token(review.text), "username": "x"}
    forged = http.post(flow["verification_uri"], data={**form, "form_token": "guess", "decision": "approve"})
    assert forged.status_code == 403  # a form posted from another site
    denied = http.post(flow["verification_uri"], data={**form, "decision": "deny"})
    assert "not signed in" in denied.text
    assert poll(http, server, flow["device_code"])[1]["error"] == "access_denied"
    again = http.post(flow["verification_uri"], data={**form, "decision": "approve"})
    assert again.status_code == 409
    unknown = http.get(flow["verification_uri"], params={"user_code": "<script>alert(1)</script>"})
    assert "cannot be used" in unknown.text
    assert "<script>" not in unknown.text and "&lt;script&gt;" in unknown.text


def test_a_full_login_through_the_page_with_login_helper(server: AuthServer, http: requests.Session) -> None:
    tokens = login(http, server, user="eve")
    assert api(http, server, tokens["access_token"]).json()["sub"] == "eve"


# -- request bodies ------------------------------------------------------------------------------


def test_chunked_and_oversized_bodies(server: AuthServer, http: requests.Session) -> None:
    token = login(http, server)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    chunks = [b"x" * 1000] * 5
    echo = http.post(server.api_url("echo"), data=iter(chunks), headers=headers).json()  # Transfer-Encoding: chunked
    assert echo["body_length"] == 5000
    big = http.post(server.api_url("echo"), data=b"x" * (2 << 20), headers=headers)
    assert big.status_code == 413


def test_redirects(server: AuthServer, http: requests.Session) -> None:
    same = http.get(server.api_url("redirect-same"), params={"to": "/api/x"}, allow_redirects=False)
    assert same.headers["Location"] == f"{server.base_url}/api/x"
    cross = http.get(server.api_url("redirect-cross"), params={"to": "/api/y"}, allow_redirects=False)
    assert cross.headers["Location"] == f"http://localhost:{server.port}/api/y"
    assert http.get(server.api_url("redirect-same"), params={"to": "//evil"}, allow_redirects=False).status_code == 400
