"""deviceauth's client against the embedded server, where the server's knobs matter.

The integration suite (tests/integration) runs on this server too; these cover what it
tests only on oidc-provider (servers started with special options), plus the knobs only the
embedded server has: interval enforcement, session maximum, auto-approval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from deviceauth import DeviceAuth, DeviceCodeExpired, DiscoveryError
from deviceauth.testing import AuthServer, AutoApprover


def _auth(server: AuthServer, cache: Path, **options: object) -> DeviceAuth:
    settings: dict[str, object] = {"scope": "openid", "cache": cache, "interactive": True, "open_browser": False}
    settings.update(options)
    return DeviceAuth(server.issuer, server.client_id, **settings)  # type: ignore[arg-type]


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / ".tokens.json"


def test_device_code_expires(make_server: Callable[..., AuthServer], cache: Path) -> None:
    server = make_server(mode="keycloak", device_ttl=2)
    with pytest.raises(DeviceCodeExpired):
        _auth(server, cache, prompt=lambda code: None).get_token()
    assert server.stats()["token_errors"].get("authorization_pending", 0) >= 1


def test_slow_down_is_obeyed(make_server: Callable[..., AuthServer], cache: Path) -> None:
    server = make_server(mode="keycloak", slow_down=1, enforce_interval=True)
    _auth(server, cache, prompt=AutoApprover(server)).get_token()
    # One forced slow_down; the next poll came 5 s later, not sooner (or enforcement would say so).
    assert server.stats()["token_errors"] == {"slow_down": 1}


def test_polls_keep_to_the_interval(make_server: Callable[..., AuthServer], cache: Path) -> None:
    server = make_server(interval=1, enforce_interval=True, auto_approve=1.5)
    _auth(server, cache, prompt=lambda code: None).get_token()
    stats = server.stats()
    assert stats["token_errors"].get("authorization_pending", 0) >= 1  # it polled more than once
    assert "slow_down" not in stats["token_errors"]  # and never too soon


def test_rfc8414_discovery_fallback(make_server: Callable[..., AuthServer], cache: Path) -> None:
    server = make_server(oidc_discovery=False)
    auth = _auth(server, cache, prompt=AutoApprover(server))
    with requests.Session() as http:
        http.trust_env = False
        assert http.get(server.api_url("me"), auth=auth, timeout=10).status_code == 200


def test_server_without_device_flow_gets_clear_error(make_server: Callable[..., AuthServer], cache: Path) -> None:
    server = make_server(mode="keycloak", device_flow=False)
    with pytest.raises(DiscoveryError, match="device_authorization_endpoint"):
        _auth(server, cache).get_token()


def test_session_maximum_leads_to_a_new_login_without_a_doomed_refresh(
    make_server: Callable[..., AuthServer], cache: Path
) -> None:
    server = make_server(mode="keycloak", access_ttl=2, session_max=3)
    approver = AutoApprover(server)
    auth = _auth(server, cache, prompt=approver)
    auth.get_token()
    token = auth.cached_token()
    assert token is not None and token.refresh_expires_at is not None
    time.sleep(max(0.0, token.refresh_expires_at - time.time()) + 0.1)  # the session is over
    auth.get_token()
    assert len(approver.codes) == 2
    assert server.stats()["token_errors"].get("invalid_grant", 0) == 0  # Keycloak's refresh_expires_in was heeded


def test_confidential_client_with_client_secret_post(server: AuthServer, cache: Path) -> None:
    client_id, secret = server.confidential_client
    auth = DeviceAuth(
        server.issuer, client_id, client_secret=secret, token_endpoint_auth_method="client_secret_post",
        scope="openid", cache=cache, prompt=AutoApprover(server), interactive=True, open_browser=False,
    )  # fmt: skip
    with requests.Session() as http:
        http.trust_env = False
        assert http.get(server.api_url("me"), auth=auth, timeout=10).json()["client_id"] == client_id
        result = auth.logout()
        assert result
        assert result.revoked
    assert server.stats()["revocation"] == 2
