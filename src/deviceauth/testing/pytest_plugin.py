"""pytest fixtures for code that logs in with deviceauth: a real authorization server, no mocks.

Loaded automatically wherever deviceauth is installed (the ``pytest11`` entry point); it
costs nothing until a test asks for a fixture:

``deviceauth_server``
    a session-wide :class:`deviceauth.testing.AuthServer` on 127.0.0.1. Override the
    ``deviceauth_server_options`` fixture (a dict of ``AuthServer`` keyword arguments) in
    your ``conftest.py`` to change it, e.g. ``{"access_ttl": 3, "mode": "keycloak"}``.
``deviceauth_approver``
    an :class:`~deviceauth.testing.AutoApprover` prompt: approves each code as ``alice``
    and keeps the codes it saw (``len(deviceauth_approver.codes)`` counts logins).
``deviceauth_auth``
    a ``DeviceAuth`` bound to that server, with a cache in the test's ``tmp_path`` and
    the approver as its prompt: pass it to the SDK under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from deviceauth import DeviceAuth
    from deviceauth.testing import AuthServer, AutoApprover

__all__ = ["deviceauth_approver", "deviceauth_auth", "deviceauth_server", "deviceauth_server_options"]


@pytest.fixture(scope="session")
def deviceauth_server_options() -> dict[str, Any]:
    """Keyword arguments for the session's ``AuthServer``; override it to change the server."""
    return {}


@pytest.fixture(scope="session")
def deviceauth_server(deviceauth_server_options: dict[str, Any]) -> Iterator[AuthServer]:
    """A running embedded authorization server, shared by the whole test session."""
    from deviceauth.testing import AuthServer

    with AuthServer(**deviceauth_server_options) as server:
        yield server


@pytest.fixture
def deviceauth_approver(deviceauth_server: AuthServer) -> AutoApprover:
    """A prompt that approves each code at the server at once, as a person would."""
    from deviceauth.testing import AutoApprover

    return AutoApprover(deviceauth_server)


@pytest.fixture
def deviceauth_auth(deviceauth_server: AuthServer, deviceauth_approver: AutoApprover, tmp_path: Path) -> DeviceAuth:
    """A ``DeviceAuth`` for the server's public client, with a private cache for this test."""
    from deviceauth import DeviceAuth

    return DeviceAuth(
        deviceauth_server.issuer,
        deviceauth_server.client_id,
        scope="openid",
        cache=tmp_path / "deviceauth" / ".tokens.json",
        prompt=deviceauth_approver,
        interactive=True,
        open_browser=False,
    )
