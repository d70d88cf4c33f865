"""deviceauth: log in once with the OAuth 2.0 device flow, then pass ``auth=`` to your HTTP client.

Tokens refresh by themselves and are shared through a locked, atomically written
``.tokens.json`` so that many processes and threads refresh once, not once each.
"""

from __future__ import annotations

from ._auth import DeviceAuth
from ._cache import default_cache_path
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
from ._flow import DeviceCode
from ._prompt import default_prompt
from ._token import Token

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AuthorizationError",
    "CacheError",
    "DeviceAuth",
    "DeviceAuthError",
    "DeviceCode",
    "DeviceCodeExpired",
    "DiscoveryError",
    "InsecureTransport",
    "LockTimeout",
    "LoginRequired",
    "ServerError",
    "Token",
    "TokenRejected",
    "__version__",
    "default_cache_path",
    "default_prompt",
]
