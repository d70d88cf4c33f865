"""The Acme SDK's tests, as an SDK author writes them: a real login, real refreshes, no mocks.

The fixtures come from deviceauth's pytest plugin: ``deviceauth_server`` (an embedded
authorization server with a protected API at ``/api``), ``deviceauth_auth`` (a ``DeviceAuth``
bound to it that approves its own login) and ``deviceauth_approver`` (which counts logins).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from acme_sdk import AcmeClient, AcmeError

import deviceauth
from deviceauth.testing import AuthServer, AutoApprover

REFRESH = "refresh_token"


def test_get_item_logs_in_once(
    deviceauth_server: AuthServer, deviceauth_auth: deviceauth.DeviceAuth, deviceauth_approver: AutoApprover
) -> None:
    with AcmeClient(deviceauth_server.base_url + "/api", deviceauth_auth) as acme:
        first = acme.get_item("1")
        second = acme.get_item("2")
    assert first["path"] == "/api/items/1"
    assert second["sub"] == "alice"
    assert len(deviceauth_approver.codes) == 1  # one login for both calls


def test_calls_keep_working_across_token_expiries(
    deviceauth_server: AuthServer, deviceauth_auth: deviceauth.DeviceAuth
) -> None:
    deviceauth_auth.get_token()  # log in first, then count only what the calls cause
    deviceauth_server.reset_stats()
    tokens = set()
    with AcmeClient(deviceauth_server.base_url + "/api", deviceauth_auth) as acme:
        for i in range(40):  # bounded: 3 s tokens are refreshed every ~1.5 s
            tokens.add(acme.get_item(str(i))["token_sha256"])
            if len(tokens) >= 3:
                break
            time.sleep(0.2)
    stats = deviceauth_server.stats()
    assert len(tokens) >= 3
    assert stats["token"][REFRESH] == len(tokens) - 1  # one refresh per new token, none wasted
    assert stats["api"]["unauthorized"] == 0


def test_the_sdk_builds_its_own_auth_with_its_own_prompt(deviceauth_server: AuthServer, tmp_path: Path) -> None:
    approver = AutoApprover(deviceauth_server, account_id="bob")
    acme = AcmeClient(
        deviceauth_server.base_url + "/api",
        issuer=deviceauth_server.issuer,
        client_id=deviceauth_server.client_id,
        prompt=approver,
        cache=tmp_path / ".tokens.json",
        interactive=True,
    )
    with acme:
        assert acme.get_item("7")["sub"] == "bob"
    assert (tmp_path / ".tokens.json").exists()


def test_a_revoked_session_surfaces_as_a_new_login(
    deviceauth_server: AuthServer, deviceauth_auth: deviceauth.DeviceAuth, deviceauth_approver: AutoApprover
) -> None:
    with AcmeClient(deviceauth_server.base_url + "/api", deviceauth_auth) as acme:
        acme.get_item("1")
        deviceauth_server.revoke_all()  # an administrator ends every session
        assert acme.get_item("2")["sub"] == "alice"  # the API's 401 led to a new login, not an error
    assert len(deviceauth_approver.codes) == 2


def test_api_errors_become_sdk_errors(deviceauth_server: AuthServer, tmp_path: Path) -> None:
    nobody = deviceauth.DeviceAuth(
        deviceauth_server.issuer, deviceauth_server.client_id, cache=tmp_path / ".tokens.json", interactive=False
    )
    with AcmeClient(deviceauth_server.base_url + "/api", nobody) as acme, pytest.raises(deviceauth.LoginRequired):
        acme.get_item("1")  # no one to approve a login: a clear error, no hang
    with AcmeClient(deviceauth_server.base_url + "/nowhere", deviceauth.DeviceAuth(
        deviceauth_server.issuer, deviceauth_server.client_id, cache=tmp_path / "b.json",
        prompt=AutoApprover(deviceauth_server), interactive=True,
    )) as acme, pytest.raises(AcmeError) as caught:  # fmt: skip
        acme.get_item("1")
    assert caught.value.status == 404
