"""The pytest plugin: registered through the ``pytest11`` entry point, its fixtures work here and in an SDK's suite."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import requests

from deviceauth import DeviceAuth
from deviceauth.testing import AuthServer, AutoApprover

SDK = Path(__file__).resolve().parents[2] / "examples" / "sdk_client"


def test_the_plugin_is_registered_for_pytest() -> None:
    plugins = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    assert plugins.get("deviceauth") == "deviceauth.testing.pytest_plugin"


def test_fixtures_in_this_suite(
    deviceauth_server: AuthServer, deviceauth_auth: DeviceAuth, deviceauth_approver: AutoApprover
) -> None:
    with requests.Session() as http:
        http.trust_env = False
        me = http.get(deviceauth_server.api_url("me"), auth=deviceauth_auth, timeout=10).json()
    assert me["sub"] == "alice"
    assert len(deviceauth_approver.codes) == 1
    assert deviceauth_auth.cache_path.name == ".tokens.json"
    assert deviceauth_server.issuer == deviceauth_auth.issuer


def test_the_example_sdk_suite_passes_on_the_plugin_alone() -> None:
    # A separate pytest run, as an SDK author's CI does it: nothing but the installed plugin.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(SDK), "-q", "-p", "no:cacheprovider"],
        capture_output=True, text=True, timeout=110, cwd=SDK, env={**os.environ, "NO_PROXY": "*"}, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
