"""deviceauth: log in once with the OAuth 2.0 device flow, then pass ``auth=`` to your HTTP client.

Tokens refresh by themselves and are shared through a token store (a locked, atomically
written ``.tokens.json`` by default, or Redis for many hosts) so that many processes and
threads refresh once, not once each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

from ._exceptions import __all__ as _exception_names

# Where each public name lives. They are imported on first use, so that `import deviceauth`
# (and `deviceauth token` with a fresh token) loads only what it needs.
_HOMES = {
    "DeviceAuth": "._auth",
    "LogoutResult": "._auth",
    "FileStore": "._filestore",
    "default_cache_path": "._filestore",
    "DeviceCode": "._flow",
    "default_prompt": "._prompt",
    "TokenSource": "._source",
    "TokenStore": "._store",
    "Token": "._token",
    **dict.fromkeys(_exception_names, "._exceptions"),
}


def __getattr__(name: str) -> Any:
    if name == "__version__":  # from the installed package's metadata
        from importlib.metadata import version

        return version("deviceauth")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    member = getattr(import_module(home, __name__), name)
    # Tracebacks and reprs name the public home of each name, not the private module it lives in.
    member.__module__ = __name__
    globals()[name] = member
    return member


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
