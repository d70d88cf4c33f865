"""deviceauth: log in once with the OAuth 2.0 device flow, then pass ``auth=`` to your HTTP client.

Tokens refresh by themselves and are shared through a token store (a locked, atomically
written ``.tokens.json`` by default, or Redis for many hosts) so that many processes and
threads refresh once, not once each.
"""

from __future__ import annotations

from ._auth import DeviceAuth, LogoutResult
from ._exceptions import (
    AccessDenied,
    AuthorizationError,
    CacheError,
    DeviceAuthError,
    DeviceCodeExpired,
    DiscoveryError,
    InsecureTransport,
    LockTimeout,
    LoginRequired,
    ServerError,
    TokenRejected,
)
from ._filestore import FileStore, default_cache_path
from ._flow import DeviceCode
from ._prompt import default_prompt
from ._source import TokenSource
from ._store import TokenStore
from ._token import Token

__all__ = [
    "AccessDenied",
    "AuthorizationError",
    "CacheError",
    "DeviceAuth",
    "DeviceAuthError",
    "DeviceCode",
    "DeviceCodeExpired",
    "DiscoveryError",
    "FileStore",
    "InsecureTransport",
    "LockTimeout",
    "LoginRequired",
    "LogoutResult",
    "ServerError",
    "Token",
    "TokenRejected",
    "TokenSource",
    "TokenStore",
    "__version__",
    "default_cache_path",
    "default_prompt",
]

# Tracebacks and reprs name the public home of each name, not the private module it lives in.
for _name in __all__:
    _member = globals().get(_name)
    if isinstance(_member, type) or callable(_member):
        _member.__module__ = __name__
del _name, _member


def __getattr__(name: str) -> str:
    # The version comes from the installed package's metadata, read only when asked for.
    if name == "__version__":
        from importlib.metadata import version

        return version("deviceauth")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
