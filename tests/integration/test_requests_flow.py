"""The foundation, end to end: device login, requests ``auth=``, refresh across expiries, errors.

Every test talks to the real oidc-provider (refresh-token rotation and reuse detection on)
and checks what reached it through the server's own counters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from deviceauth import (
    AccessDenied,
    DeviceAuth,
    DeviceCodeExpired,
    DiscoveryError,
    LoginRequired,
)
from oidc_server import ACCESS_TTL, Approver, OidcServer
from store_helpers import as_a_new_process, only_token, rewrite_token, stored_identities

REFRESH_GRANT = "refresh_token"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.time()))


def test_login_then_requests_across_several_expiries(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], approver: Approver
) -> None:
    auth = make_auth()
    seen_tokens: set[str] = set()
    end = time.time() + 3.5 * ACCESS_TTL
    calls = 0
    while time.time() < end and calls < 200:
        response = requests.get(server.api_url("items"), auth=auth, timeout=10)
        assert response.status_code == 200, response.text
        seen_tokens.add(response.json()["token_sha256"])
        calls += 1
        time.sleep(0.2)

    stats = server.stats()
    assert len(approver.codes) == 1  # one prompt for the whole run
    assert stats["device_authorization"] == 1
    assert stats["token"].get(DEVICE_GRANT) == 1
    refreshes = stats["token"].get(REFRESH_GRANT, 0)
    assert refreshes >= 3  # crossed at least three expiries
    assert refreshes == len(seen_tokens) - 1  # every refresh was needed, none repeated
    assert stats["token_errors"].get("invalid_grant", 0) == 0
    assert stats["api"]["unauthorized"] == 0
    assert stats["api"]["ok"] == calls


def test_prompt_shows_code_and_keycloak_paths(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], approver: Approver
) -> None:
    requests.get(server.api_url(), auth=make_auth(), timeout=10).raise_for_status()
    (code,) = approver.codes
    assert code.user_code
    assert code.verification_uri.startswith(server.issuer)
    assert code.verification_uri_complete is not None
    assert code.user_code in code.verification_uri_complete


def test_cache_file_is_private_and_holds_no_surprises(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], cache_file: Path
) -> None:
    make_auth().get_token()
    assert cache_file.stat().st_mode & 0o777 == 0o600
    assert cache_file.parent.stat().st_mode & 0o777 == 0o700
    data = json.loads(cache_file.read_text())
    assert data["version"] == 1
    (entry,) = data["identities"].values()
    assert entry["issuer"] == server.issuer
    assert entry["token"]["refresh_expires_at"] > time.time()  # Keycloak's refresh_expires_in was kept
    assert server.issuer in data["servers"]  # discovery cached for the next process
    assert sorted(p.name for p in cache_file.parent.iterdir()) == [".tokens.json", ".tokens.json.lock"]


def test_warm_start_in_a_new_object_makes_no_server_request(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], approver: Approver
) -> None:
    make_auth().get_token()
    server.reset_stats()
    again = make_auth(leeway=0.5)  # another identity state, as in a new process
    requests.get(server.api_url(), auth=again, timeout=10).raise_for_status()
    stats = server.stats()
    assert stats["discovery"] == 0
    assert stats["token"] == {}
    assert len(approver.codes) == 1


def test_confidential_client_on_plain_server(plain_server: OidcServer, cache_file: Path) -> None:
    plain_server.reset_stats()
    approver = Approver(plain_server)
    auth = DeviceAuth(
        plain_server.issuer,
        "confidential-client",
        client_secret="confidential-secret",
        scope="openid",
        cache=cache_file,
        prompt=approver,
        interactive=True,
    )
    response = requests.get(plain_server.api_url(), auth=auth, timeout=10)
    assert response.status_code == 200
    assert response.json()["client_id"] == "confidential-client"
    assert plain_server.stats()["device_authorization"] == 1


def test_non_interactive_without_token_raises_login_required(
    server: OidcServer, make_auth: Callable[..., DeviceAuth]
) -> None:
    auth = make_auth(interactive=False)
    with pytest.raises(LoginRequired) as caught:
        requests.get(server.api_url(), auth=auth, timeout=10)
    assert f"deviceauth login --issuer {server.issuer} --client-id client-tools" in str(caught.value)
    assert server.stats()["device_authorization"] == 0
    assert server.stats()["api"]["ok"] + server.stats()["api"]["unauthorized"] == 0


def test_401_from_api_refreshes_once_and_retries_once(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], cache_file: Path
) -> None:
    make_auth().get_token()
    rewrite_token(cache_file, access_token="revoked-or-garbage")  # fresh by the clock, rejected by the API
    as_a_new_process()
    server.reset_stats()

    auth = make_auth()
    response = requests.post(server.api_url("upload"), data=b"payload", auth=auth, timeout=10)

    assert response.status_code == 200
    assert response.json()["body_length"] == len(b"payload")
    assert [r.status_code for r in response.history] == [401]
    stats = server.stats()
    assert stats["api"] == {"ok": 1, "unauthorized": 1, "redirect": 0}
    assert stats["token"] == {REFRESH_GRANT: 1}


def test_server_session_end_clears_entry_and_asks_for_login(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], cache_file: Path
) -> None:
    make_auth().get_token()
    server.revoke_all()  # the realm session ended (or an admin logged the user out)
    waiting = make_auth(interactive=False, leeway=0.1)
    _sleep_until(only_token(cache_file).expires_at)
    with pytest.raises(LoginRequired):
        waiting.get_token()
    assert server.stats()["token_errors"].get("invalid_grant") == 1
    assert stored_identities(cache_file) == 0  # cleared: the next caller logs in


def test_expired_session_logs_in_again_when_interactive(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], approver: Approver, cache_file: Path
) -> None:
    make_auth().get_token()
    server.revoke_all()
    rewrite_token(cache_file, expires_at=time.time() - 1)
    requests.get(server.api_url(), auth=make_auth(leeway=0.2), timeout=10).raise_for_status()
    assert len(approver.codes) == 2
    assert server.stats()["device_authorization"] == 2


def test_denied_login(server: OidcServer, cache_file: Path, make_auth: Callable[..., DeviceAuth]) -> None:
    auth = make_auth(prompt=lambda code: server.deny(code.user_code))
    with pytest.raises(AccessDenied):
        auth.get_token()
    assert stored_identities(cache_file) == 0


def test_device_code_expires(cache_file: Path) -> None:
    with OidcServer(mode="keycloak", device_ttl=2) as short:
        auth = DeviceAuth(
            short.issuer, "client-tools", scope="openid", cache=cache_file, interactive=True, prompt=lambda code: None
        )
        started = time.monotonic()
        with pytest.raises(DeviceCodeExpired):
            auth.get_token()
        assert time.monotonic() - started < 5
        assert short.stats()["token_errors"].get("authorization_pending", 0) >= 1


def test_slow_down_is_obeyed(cache_file: Path) -> None:
    with OidcServer(mode="keycloak", slow_down=1) as slow:
        approver = Approver(slow)
        auth = DeviceAuth(
            slow.issuer, "client-tools", scope="openid", cache=cache_file, interactive=True, prompt=approver
        )
        started = time.monotonic()
        auth.get_token()
        elapsed = time.monotonic() - started
        stats = slow.stats()
        assert stats["token_errors"] == {"slow_down": 1}, stats
        # first poll after 1 s (interval), second after 1 + 5 s (slow_down adds 5 s)
        assert 6.0 <= elapsed < 10.0, elapsed


def test_rfc8414_discovery_fallback(cache_file: Path) -> None:
    with OidcServer(mode="plain", extra_args=["--no-discovery-oidc"]) as server:
        auth = DeviceAuth(
            server.issuer, "client-tools", scope="openid", cache=cache_file, interactive=True, prompt=Approver(server)
        )
        requests.get(server.api_url(), auth=auth, timeout=10).raise_for_status()


def test_server_without_device_flow_gets_clear_error(cache_file: Path) -> None:
    with OidcServer(mode="keycloak", extra_args=["--no-device"]) as server:
        auth = DeviceAuth(server.issuer, "client-tools", scope="openid", cache=cache_file, interactive=True)
        with pytest.raises(DiscoveryError, match="device_authorization_endpoint"):
            auth.get_token()


def test_logout_revokes_at_server(server: OidcServer, make_auth: Callable[..., DeviceAuth], cache_file: Path) -> None:
    auth = make_auth()
    token = auth.get_token()
    result = auth.logout()
    assert result
    assert result.revoked
    assert server.stats()["revocation"] == 2  # refresh token and access token
    assert stored_identities(cache_file) == 0
    rejected = requests.get(server.api_url(), headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert rejected.status_code == 401
