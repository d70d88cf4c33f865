"""The ``deviceauth`` command as a person uses it, against the Keycloak-shaped server, plus a real browser."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from browser_approve import approve_in_browser, chromium_available

from deviceauth import DeviceAuth, DeviceCode
from oidc_server import OidcServer
from store_helpers import stored_identities

CODE_LINE = re.compile(r"enter the code (\S+)")


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deviceauth", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _identity_args(server: OidcServer, cache_file: Path) -> list[str]:
    return ["--issuer", server.issuer, "--client-id", "client-tools", "--scope", "openid", "--cache", str(cache_file)]


def test_login_status_token_logout(server: OidcServer, cache_file: Path) -> None:
    login = subprocess.Popen(
        [sys.executable, "-m", "deviceauth", "login", *_identity_args(server, cache_file), "--no-browser"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert login.stderr is not None
    shown: list[str] = []
    for _ in range(20):  # the prompt comes first; bounded in case it never does
        line = login.stderr.readline()
        shown.append(line)
        if match := CODE_LINE.search(line):
            server.approve(match.group(1))
            break
    else:
        login.kill()
        pytest.fail(f"no code shown: {shown}")
    _, err = login.communicate(timeout=30)
    assert login.returncode == 0, err
    assert "Logged in" in err
    assert server.issuer + "/device" in "".join(shown)

    token = json.loads(cache_file.read_text())["identities"].popitem()[1]["token"]
    secrets = [token["access_token"], token["refresh_token"]]

    status = _cli("status", "--cache", str(cache_file))
    assert status.returncode == 0
    assert server.issuer in status.stdout
    assert "access token valid until" in status.stdout
    assert not any(secret in status.stdout + status.stderr for secret in secrets)

    printed = _cli("token", *_identity_args(server, cache_file))
    assert printed.returncode == 0
    access_token = printed.stdout.strip()
    assert (
        requests.get(server.api_url(), headers={"Authorization": f"Bearer {access_token}"}, timeout=10).status_code
        == 200
    )

    logout = _cli("logout", *_identity_args(server, cache_file))
    assert logout.returncode == 0
    assert server.stats()["revocation"] == 2
    assert stored_identities(cache_file) == 0
    assert not any(secret in logout.stdout + logout.stderr for secret in secrets)


def test_environment_variables_configure_the_cli(
    server: OidcServer, cache_file: Path, make_auth: Callable[..., DeviceAuth]
) -> None:
    make_auth().get_token()
    env = {
        **os.environ,
        "DEVICEAUTH_ISSUER": server.issuer,
        "DEVICEAUTH_CLIENT_ID": "client-tools",
        "DEVICEAUTH_SCOPE": "openid",
        "DEVICEAUTH_CACHE": str(cache_file),
    }
    printed = _cli("token", env=env)
    assert printed.returncode == 0, printed.stderr
    assert len(printed.stdout.strip()) > 20


def test_token_without_tty_and_without_login_fails_in_one_line(server: OidcServer, cache_file: Path) -> None:
    result = _cli("token", *_identity_args(server, cache_file))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "deviceauth login --issuer" in lines[0]
    assert "Traceback" not in result.stderr


def test_unreachable_server_fails_in_one_line(cache_file: Path) -> None:
    started = time.monotonic()
    result = _cli(
        "login", "--issuer", "http://127.0.0.1:9/auth/realms/none", "--client-id", "x", "--cache", str(cache_file)
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot reach" in result.stderr
    assert time.monotonic() - started < 30


def test_corrupt_cache_is_set_aside_not_fatal(
    server: OidcServer, cache_file: Path, make_auth: Callable[..., DeviceAuth]
) -> None:
    cache_file.parent.mkdir(parents=True)
    cache_file.write_text("{ this is not json")
    assert requests.get(server.api_url(), auth=make_auth(), timeout=10).status_code == 200
    aside = [p for p in cache_file.parent.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1
    assert aside[0].read_text() == "{ this is not json"  # kept for the person to inspect


@pytest.mark.browser
@pytest.mark.skipif(not chromium_available(), reason="Debian chromium is not installed at /usr/bin/chromium")
def test_login_approved_in_a_real_browser(server: OidcServer, make_auth: Callable[..., DeviceAuth]) -> None:
    def in_browser(code: DeviceCode) -> None:
        approve_in_browser(code.verification_uri_complete or code.verification_uri)

    auth = make_auth(prompt=in_browser)
    response = requests.get(server.api_url(), auth=auth, timeout=10)
    assert response.status_code == 200
    assert response.json()["client_id"] == "client-tools"
    assert server.stats()["device_authorization"] == 1
