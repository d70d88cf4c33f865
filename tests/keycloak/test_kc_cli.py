"""``python -m deviceauth login/token/status/logout`` against Keycloak, as a person at a shell would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import requests
from kc_approve import run_approving
from kc_server import Keycloak

REALM = "rrap"


def test_cli_login_token_status_logout(kc: Keycloak, cache_file: Path) -> None:
    env = {**os.environ, "DEVICEAUTH_ISSUER": kc.issuer(REALM), "DEVICEAUTH_CLIENT_ID": "client-tools"}
    env.pop("DEVICEAUTH_OFFLINE_TOKEN", None)
    common = ["--scope", "openid", "--cache", str(cache_file)]
    cli = [sys.executable, "-m", "deviceauth"]

    login = run_approving([*cli, "login", "--no-browser", *common], env=env)
    assert login.returncode == 0, login.stderr
    assert login.stderr.count("To sign in") == 1
    assert "Logged in to" in login.stderr

    token = run_approving([*cli, "token", *common], env=env)
    assert token.returncode == 0, token.stderr
    access_token = token.stdout.strip()
    userinfo = requests.get(kc.userinfo_url(REALM), headers={"Authorization": f"Bearer {access_token}"}, timeout=10)
    assert userinfo.status_code == 200
    assert userinfo.json()["preferred_username"] == "alice"

    status = run_approving([*cli, "status", "--cache", str(cache_file)], env=env)
    assert status.returncode == 0, status.stderr
    assert kc.issuer(REALM) in status.stdout
    assert access_token not in status.stdout + status.stderr  # status never shows token values

    logout = run_approving([*cli, "logout", *common], env=env)
    assert logout.returncode == 0, logout.stderr
    assert "Logged out" in logout.stderr
    assert (
        requests.get(
            kc.userinfo_url(REALM), headers={"Authorization": f"Bearer {access_token}"}, timeout=10
        ).status_code
        == 401
    )  # Keycloak ended the session

    after = run_approving([*cli, "token", *common], env=env)  # no TTY: a clear error, never a hang
    assert after.returncode == 1
    assert "deviceauth login" in after.stderr
    assert "To sign in" not in after.stderr
    events = kc.count(REALM)
    print("Keycloak events:", events)
    assert events.get("OAUTH2_DEVICE_CODE_TO_TOKEN", 0) == 1
    assert events.get("REVOKE_GRANT", 0) >= 1
