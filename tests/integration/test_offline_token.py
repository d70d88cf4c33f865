"""Automation credentials: an offline (refresh) token supplied by the caller, never prompting."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from deviceauth import DeviceAuth, LoginRequired
from oidc_server import ACCESS_TTL, Approver, OidcServer

OFFLINE_SCOPE = "openid offline_access"


def _offline_token(server: OidcServer, tmp_path: Path) -> str:
    """Obtain an offline token the way an admin would: one interactive login with offline_access."""
    setup_cache = tmp_path / "setup" / ".tokens.json"
    auth = DeviceAuth(
        server.issuer,
        "client-tools",
        scope=OFFLINE_SCOPE,
        cache=setup_cache,
        prompt=Approver(server),
        interactive=True,
    )
    auth.get_token()
    token = auth.cached_token()
    assert token is not None and token.refresh_token
    return token.refresh_token


def test_offline_token_from_environment_works_unattended_and_is_not_cached(
    server: OidcServer,
    tmp_path: Path,
    cache_file: Path,
    make_auth: Callable[..., DeviceAuth],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    offline = _offline_token(server, tmp_path)
    monkeypatch.setenv("DEVICEAUTH_OFFLINE_TOKEN", offline)
    server.reset_stats()
    auth = make_auth(scope=OFFLINE_SCOPE, interactive=False, prompt=None)
    assert offline not in repr(auth)
    response = requests.get(server.api_url(), auth=auth, timeout=10)
    assert response.status_code == 200
    stats = server.stats()
    assert stats["device_authorization"] == 0
    assert stats["token"] == {"refresh_token": 1}
    text = cache_file.read_text()
    assert offline not in text
    (entry,) = json.loads(text)["identities"].values()
    assert "refresh_token" not in entry["token"]  # only the access token is shared through the cache


def test_rotated_offline_token_is_followed_across_expiries(
    server: OidcServer, tmp_path: Path, make_auth: Callable[..., DeviceAuth]
) -> None:
    offline = _offline_token(server, tmp_path)
    auth = make_auth(scope=OFFLINE_SCOPE, interactive=False, prompt=None, offline_token=offline, leeway=0.1)
    tokens = [auth.get_token()]
    for _ in range(2):  # two expiries: each needs the offline token the previous refresh rotated
        time.sleep(ACCESS_TTL)
        tokens.append(auth.get_token())
    assert len(set(tokens)) == 3
    assert server.stats()["token_errors"].get("invalid_grant", 0) == 0


def test_store_offline_token_keeps_the_rotating_token_in_the_cache(
    server: OidcServer, tmp_path: Path, make_auth: Callable[..., DeviceAuth]
) -> None:
    offline = _offline_token(server, tmp_path)
    auth = make_auth(
        scope=OFFLINE_SCOPE, interactive=False, prompt=None, offline_token=offline, store_offline_token=True
    )
    auth.get_token()
    token = auth.cached_token()
    assert token is not None and token.refresh_token and token.refresh_token != offline  # rotated


def test_rejected_offline_token_raises_login_required_without_prompting(
    server: OidcServer, make_auth: Callable[..., DeviceAuth]
) -> None:
    auth = make_auth(offline_token="not-a-real-offline-token", prompt=lambda code: pytest.fail("must not prompt"))
    with pytest.raises(LoginRequired, match="offline token") as caught:
        auth.get_token()
    assert "not-a-real-offline-token" not in str(caught.value)
    assert server.stats()["device_authorization"] == 0
