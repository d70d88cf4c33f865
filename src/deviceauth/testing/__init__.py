"""``deviceauth.testing``: a small, real RFC 8628 authorization server for demos and tests.

Built on Authlib's server components, in memory, in a thread of your process::

    from deviceauth import DeviceAuth
    from deviceauth.testing import AuthServer, AutoApprover

    with AuthServer(access_ttl=3) as server:
        auth = DeviceAuth(server.issuer, server.client_id, prompt=AutoApprover(server))
        requests.get(server.api_url("me"), auth=auth).json()   # {"sub": "alice", ...}

It also runs as ``deviceauth serve`` (a verification page for a real browser), powers
``deviceauth demo``, and gives pytest the fixtures ``deviceauth_server`` and ``deviceauth_auth``
(``deviceauth.testing.pytest_plugin``, loaded automatically when deviceauth is installed).
Test use only: any name signs in, everything lives in memory.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._config import ServerConfig
    from ._models import Client
    from ._server import AuthServer, AutoApprover
    from ._store import ControlError, Fault

__all__ = ["AuthServer", "AutoApprover", "Client", "ControlError", "Fault", "ServerConfig"]

# Imported on first use, so that the CLI (which registers `serve` and `demo` from here) does not
# load Authlib's server side for `deviceauth login`.
_HOMES = {
    "AuthServer": "_server",
    "AutoApprover": "_server",
    "Client": "_models",
    "ControlError": "_store",
    "Fault": "_store",
    "ServerConfig": "_config",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
