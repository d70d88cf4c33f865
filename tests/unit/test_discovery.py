"""``discover``: OpenID Connect discovery first, then the RFC 8414 locations; issuer checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
import responses

from deviceauth import DiscoveryError, InsecureTransport, ServerError
from deviceauth._discovery import discover, well_known_urls
from deviceauth._oauth import OAuthClient

TENANT = "https://as.example.org/tenant1"
OIDC = f"{TENANT}/.well-known/openid-configuration"
INSERTED = "https://as.example.org/.well-known/oauth-authorization-server/tenant1"
APPENDED = f"{TENANT}/.well-known/oauth-authorization-server"


@pytest.fixture
def get() -> Callable[[str], requests.Response]:
    """The GET discovery really uses: the OAuth client's session, without a token."""
    return OAuthClient("client-tools").get


def meta(issuer: str = TENANT, **extra: Any) -> dict[str, Any]:
    return {"issuer": issuer, "token_endpoint": f"{issuer}/token", **extra}


def test_well_known_urls_in_order() -> None:
    assert well_known_urls(TENANT + "/") == [OIDC, INSERTED, APPENDED]


def test_well_known_urls_for_an_issuer_without_a_path_are_not_repeated() -> None:
    assert well_known_urls("https://as.example.org") == [
        "https://as.example.org/.well-known/openid-configuration",
        "https://as.example.org/.well-known/oauth-authorization-server",
    ]


def test_openid_configuration_is_tried_first(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response]
) -> None:
    mocked.add(responses.GET, OIDC, json=meta(device_authorization_endpoint=f"{TENANT}/device"))
    mocked.add(responses.GET, INSERTED, json=meta(token_endpoint="https://wrong.example/token"))
    found = discover(get, TENANT)
    assert found["device_authorization_endpoint"] == f"{TENANT}/device"
    assert [call.request.url for call in mocked.calls] == [OIDC]
    assert "Authorization" not in mocked.calls[0].request.headers


def test_falls_back_to_rfc_8414_inserted_form(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response]
) -> None:
    mocked.add(responses.GET, OIDC, status=404)
    mocked.add(responses.GET, INSERTED, json=meta())
    assert discover(get, TENANT)["token_endpoint"] == f"{TENANT}/token"
    assert [call.request.url for call in mocked.calls] == [OIDC, INSERTED]


def test_falls_back_to_rfc_8414_appended_form(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response]
) -> None:
    mocked.add(responses.GET, OIDC, status=404)
    mocked.add(responses.GET, INSERTED, body="<html>not here</html>", status=200)
    mocked.add(responses.GET, APPENDED, json=meta())
    assert discover(get, TENANT)["issuer"] == TENANT
    assert [call.request.url for call in mocked.calls] == [OIDC, INSERTED, APPENDED]


def test_issuer_mismatch_is_refused(mocked: responses.RequestsMock, get: Callable[[str], requests.Response]) -> None:
    mocked.add(responses.GET, OIDC, json=meta(issuer="https://evil.example.org/tenant1"))
    with pytest.raises(DiscoveryError) as caught:
        discover(get, TENANT)
    assert "https://evil.example.org/tenant1" in str(caught.value)
    assert TENANT in str(caught.value)


def test_metadata_without_issuer_is_refused(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response]
) -> None:
    mocked.add(responses.GET, OIDC, json={"token_endpoint": f"{TENANT}/token"})
    with pytest.raises(DiscoveryError, match="issuer"):
        discover(get, TENANT)


def test_metadata_without_token_endpoint_is_refused(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response]
) -> None:
    mocked.add(responses.GET, OIDC, json={"issuer": TENANT})
    with pytest.raises(DiscoveryError, match="token_endpoint"):
        discover(get, TENANT)


def test_a_trailing_slash_on_either_side_is_not_a_mismatch(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response]
) -> None:
    mocked.add(responses.GET, OIDC, json=meta(issuer=TENANT + "/"))
    assert discover(get, TENANT)["issuer"] == TENANT + "/"


def test_not_found_everywhere_names_every_url(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response]
) -> None:
    for url in (OIDC, INSERTED, APPENDED):
        mocked.add(responses.GET, url, status=404)
    with pytest.raises(DiscoveryError) as caught:
        discover(get, TENANT)
    message = str(caught.value)
    for url in (OIDC, INSERTED, APPENDED):
        assert url in message
    assert "404" in message
    assert isinstance(caught.value, ServerError)


def test_connection_error_is_a_server_error(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response]
) -> None:
    mocked.add(responses.GET, OIDC, body=requests.ConnectionError("refused"))
    with pytest.raises(ServerError) as caught:
        discover(get, TENANT)
    assert not isinstance(caught.value, DiscoveryError)
    assert OIDC in str(caught.value)
    assert isinstance(caught.value.__cause__, requests.ConnectionError)


def test_timeout_is_a_server_error(mocked: responses.RequestsMock, get: Callable[[str], requests.Response]) -> None:
    mocked.add(responses.GET, OIDC, body=requests.Timeout("slow"))
    with pytest.raises(ServerError, match="timed out"):
        discover(get, TENANT)


@pytest.mark.parametrize("issuer", ["https://kc.example.org/auth/realms/rrap", "https://kc.example.org/realms/rrap"])
def test_keycloak_realm_url_as_issuer(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response], issuer: str
) -> None:
    mocked.add(
        responses.GET,
        f"{issuer}/.well-known/openid-configuration",
        json=meta(issuer, device_authorization_endpoint=f"{issuer}/protocol/openid-connect/auth/device"),
    )
    found = discover(get, issuer)
    assert found["device_authorization_endpoint"] == f"{issuer}/protocol/openid-connect/auth/device"
    assert len(mocked.calls) == 1


# -- typed failures, with ``transient`` set consistently ---------------------------------------------


def test_5xx_everywhere_is_a_transient_discovery_error(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response]
) -> None:
    for url in (OIDC, INSERTED, APPENDED):
        mocked.add(responses.GET, url, status=503)
    with pytest.raises(DiscoveryError) as caught:
        discover(get, TENANT)
    assert caught.value.transient


@pytest.mark.parametrize("body", ["<html>", "[1]", "[" * 100_000 + "]" * 100_000])
def test_4xx_and_bad_json_are_not_transient(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response], body: str
) -> None:
    mocked.add(responses.GET, OIDC, status=404)
    mocked.add(responses.GET, INSERTED, status=403)
    mocked.add(responses.GET, APPENDED, body=body)
    with pytest.raises(DiscoveryError) as caught:
        discover(get, TENANT)
    assert not caught.value.transient


def test_network_errors_are_transient(mocked: responses.RequestsMock, get: Callable[[str], requests.Response]) -> None:
    mocked.add(responses.GET, OIDC, body=requests.ConnectionError("reset"))
    with pytest.raises(ServerError) as caught:
        discover(get, TENANT)
    assert caught.value.transient


def test_a_certificate_failure_is_not_transient(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response]
) -> None:
    mocked.add(responses.GET, OIDC, body=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(ServerError, match="TLS") as caught:
        discover(get, TENANT)
    assert not caught.value.transient


def test_a_redirect_is_refused_not_followed(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response]
) -> None:
    mocked.add(responses.GET, OIDC, status=302, headers={"Location": "https://elsewhere.example/meta?secret=1"})
    with pytest.raises(ServerError, match=r"https://elsewhere\.example") as caught:
        discover(get, TENANT)
    assert "secret=1" not in str(caught.value)
    assert len(mocked.calls) == 1


@pytest.mark.parametrize("issuer", ["http://as.example.org/tenant1", "javascript:alert(1)", "file:///etc/passwd"])
def test_an_issuer_we_may_not_contact_is_refused_before_any_request(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response], issuer: str
) -> None:
    with pytest.raises(InsecureTransport):
        discover(get, issuer)
    assert len(mocked.calls) == 0


def test_an_issuer_text_from_the_server_is_sanitized(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response]
) -> None:
    mocked.add(responses.GET, OIDC, json=meta(issuer="https://evil.example/\x1b[2J\r\nfake line" + "x" * 1000))
    with pytest.raises(DiscoveryError) as caught:
        discover(get, TENANT)
    message = str(caught.value)
    assert "\x1b" not in message and "\n" not in message and len(message) < 600


@pytest.mark.parametrize("name", ["token_endpoint", "device_authorization_endpoint", "revocation_endpoint"])
def test_an_unusable_endpoint_makes_the_metadata_unusable(
    mocked: responses.RequestsMock, get: Callable[[str], requests.Response], name: str
) -> None:
    mocked.add(responses.GET, OIDC, json=meta(**{name: "javascript:alert(1)"}))
    with pytest.raises(DiscoveryError, match=name) as caught:
        discover(get, TENANT)
    assert not caught.value.transient
