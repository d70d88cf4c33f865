"""``deviceauth.testing`` as a package: its public names, and that the CLI does not load it for nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

import deviceauth.testing


def test_all_is_sorted_and_every_name_resolves() -> None:
    names = list(deviceauth.testing.__all__)
    assert names == sorted(set(names))
    for name in names:
        assert getattr(deviceauth.testing, name).__module__.startswith("deviceauth.testing"), name
    with pytest.raises(AttributeError):
        deviceauth.testing.Nothing  # noqa: B018


def test_the_cli_loads_authlibs_server_side_only_for_serve_and_demo() -> None:
    code = "import sys, deviceauth._cli\nprint('authlib.oauth2.rfc8628' in sys.modules)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="mode"):
        deviceauth.testing.AuthServer(mode="okta")
    with pytest.raises(ValueError, match="access_ttl"):
        deviceauth.testing.AuthServer(access_ttl=0)
    with pytest.raises(TypeError):
        deviceauth.testing.AuthServer(no_such_knob=1)
    server = deviceauth.testing.AuthServer()
    with pytest.raises(RuntimeError, match="not started"):
        server.stats()
    assert repr(server) == "AuthServer(not started, mode='plain')"
