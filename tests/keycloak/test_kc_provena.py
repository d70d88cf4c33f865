"""Provena's notebook code on a real Keycloak, changed only in its import (``deviceauth.provena``).

The notebooks (gbrrestoration/rrap-demo-blog) build one ``DeviceFlowManager`` with ``stage``,
``keycloak_endpoint`` and ``local_storage_location``, call ``get_auth()`` anew for every request,
and assign ``get_token()`` to an OpenAPI ``Configuration.access_token``. Run as a plain script,
with and without a terminal; the printed prompt is approved by the form-walking approver.
The one addition, ``scopes=["openid"]``, is for the stand-in API: Keycloak's userinfo endpoint
refuses tokens without the ``openid`` scope (Provena's APIs do not ask for it).
"""

from __future__ import annotations

import json
import os
import pty
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from kc_approve import run_approving
from kc_server import REPO, Keycloak

from deviceauth import DeviceAuth, LoginRequired
from deviceauth.provena import DeviceFlowManager

REALM, SHORT_REALM = "rrap", "rrap-short"

NOTEBOOK = textwrap.dedent(
    """
    import sys, time
    import requests
    from deviceauth.provena import DeviceFlowManager  # was: from mdsisclienttools.auth.TokenManager import ...
    from openapi_config import Configuration  # stands in for a generated client's Configuration

    kc_endpoint, userinfo, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    token_manager = DeviceFlowManager(
        stage="PROD", keycloak_endpoint=kc_endpoint, local_storage_location=".tokens.json", scopes=["openid"]
    )
    auth = token_manager.get_auth
    calls = 0
    end = time.time() + seconds
    while time.time() < end:
        response = requests.get(userinfo, auth=auth())
        response.raise_for_status()
        configuration = Configuration()
        configuration.access_token = token_manager.get_token()
        header = configuration.auth_settings()["bearerAuth"]["value"]
        requests.get(userinfo, headers={"Authorization": header}).raise_for_status()
        calls += 2
        time.sleep(0.3)
    print(calls, response.json()["preferred_username"])
    """
)


@pytest.mark.parametrize("terminal", [False, True], ids=["no-tty", "tty"])
def test_notebook_code_as_a_script(kc: Keycloak, tmp_path: Path, terminal: bool) -> None:
    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK)
    env = {**os.environ, "PYTHONPATH": str(REPO / "examples"), "BROWSER": "true"}
    env.pop("DEVICEAUTH_CACHE", None)
    controller, tty = pty.openpty() if terminal else (None, None)
    try:
        run = run_approving(
            [sys.executable, str(script), kc.issuer(REALM), kc.userinfo_url(REALM), "12"],
            env=env,
            cwd=str(tmp_path),
            stdin=tty,
        )
    finally:
        for fd in (controller, tty):
            if fd is not None:
                os.close(fd)
    assert run.returncode == 0, run.stderr[-2000:]
    calls, user = run.stdout.split()
    assert user == "alice"
    assert run.stderr.count("To sign in") == 1  # it prompted and waited, as the original did
    events = kc.count(REALM)
    print("Keycloak events:", events)
    assert events.get("OAUTH2_DEVICE_CODE_TO_TOKEN", 0) == 1
    assert events.get("REFRESH_TOKEN", 0) >= 2  # 12 s of 5 s tokens
    assert events.get("REFRESH_TOKEN_ERROR", 0) == 0
    assert events.get("USER_INFO_REQUEST", 0) == int(calls)
    assert events.get("USER_INFO_REQUEST_ERROR", 0) == 0
    assert not (tmp_path / ".tokens.json").exists()  # the old tool's file is never written
    assert (tmp_path / ".tokens.deviceauth.json").exists()


def _old_tool_file(path: Path, token: DeviceAuth) -> bytes:
    cached = token.cached_token()
    assert cached is not None and cached.refresh_token
    # The layout mdsisclienttools 1.5.7 writes (pydantic .json(exclude_none=True) of StageTokens).
    path.write_text(
        json.dumps({"stages": {"PROD": {"access_token": cached.access_token, "refresh_token": cached.refresh_token}}})
    )
    return path.read_bytes()


def test_a_login_saved_by_the_old_tool_carries_over(
    kc: Keycloak, make_auth: Callable[..., DeviceAuth], tmp_path: Path
) -> None:
    person = make_auth(scope=None, cache=tmp_path / "elsewhere" / ".tokens.json")
    person.get_token()
    old_file = tmp_path / "project" / ".tokens.json"
    old_file.parent.mkdir()
    before = _old_tool_file(old_file, person)
    kc.clear_events(REALM)

    manager = DeviceFlowManager(
        stage="PROD", keycloak_endpoint=kc.issuer(REALM), local_storage_location=str(old_file), interactive=False
    )
    assert manager.get_token()  # no prompt possible: the old login must carry over
    assert manager.get_token() == manager.get_auth().get_token()
    events = kc.count(REALM)
    print("Keycloak events:", events)
    assert events.get("REFRESH_TOKEN", 0) == 1  # redeemed once
    assert events.get("OAUTH2_DEVICE_CODE_TO_TOKEN", 0) == 0
    assert old_file.read_bytes() == before
    assert manager.device_auth.cached_token() is not None

    # A second manager (another notebook) finds deviceauth's own cache: no second redemption.
    again = DeviceFlowManager("PROD", kc.issuer(REALM), local_storage_location=str(old_file), interactive=False)
    again.get_token()
    assert kc.count(REALM).get("REFRESH_TOKEN", 0) == 1


def test_an_old_login_from_another_realm_is_never_sent(
    kc: Keycloak, make_auth: Callable[..., DeviceAuth], tmp_path: Path
) -> None:
    person = make_auth(scope=None, cache=tmp_path / "elsewhere" / ".tokens.json")
    person.get_token()
    old_file = tmp_path / ".tokens.json"
    _old_tool_file(old_file, person)  # issued by realm rrap
    kc.clear_events(REALM, SHORT_REALM)
    manager = DeviceFlowManager("PROD", kc.issuer(SHORT_REALM), local_storage_location=str(old_file), interactive=False)
    with pytest.raises(LoginRequired):
        manager.get_token()
    assert kc.count(SHORT_REALM) == {}  # nothing was sent to the other realm
    assert kc.count(REALM) == {}
