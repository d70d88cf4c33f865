"""The errors deviceauth raises.

    DeviceAuthError
    ├── LoginRequired                  no usable token and prompting is not allowed
    ├── AuthorizationError             the authorization server said no
    │   ├── AccessDenied               the person declined the request
    │   ├── DeviceCodeExpired          nobody approved the code in time
    │   └── TokenRejected              the refresh/offline token is no longer valid
    ├── ServerError                    the server is unreachable or answered nonsense
    │   └── DiscoveryError             no usable metadata (or no device flow) at the issuer
    ├── CacheError                     the token cache cannot be read or written
    ├── LockTimeout(TimeoutError)      another process held the cache lock too long
    └── InsecureTransport(ValueError)  a token would go over plain http to a remote host

Messages never contain token values and say what to do next. Every error pickles (worker
processes send them back to their parents), which is why ``__reduce__`` replays the
constructor with the same arguments.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessDenied",
    "AuthorizationError",
    "CacheError",
    "DeviceAuthError",
    "DeviceCodeExpired",
    "DiscoveryError",
    "InsecureTransport",
    "LockTimeout",
    "LoginRequired",
    "ServerError",
    "TokenRejected",
]


class DeviceAuthError(Exception):
    """Base class of every error deviceauth raises."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self._details = details
        for name, value in details.items():
            setattr(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self._details))


def _rebuild(cls: type[DeviceAuthError], message: str, details: dict[str, Any]) -> DeviceAuthError:
    return cls(message, **details)


class LoginRequired(DeviceAuthError):
    """No valid token is available and this caller may not prompt a person.

    The message names the ``deviceauth login`` command that fixes it.
    """


class AuthorizationError(DeviceAuthError):
    """The authorization server refused; ``.error`` holds the OAuth error code."""

    error: str


class AccessDenied(AuthorizationError):
    """The person declined the device authorization request."""


class DeviceCodeExpired(AuthorizationError):
    """The device code expired before anyone approved it."""


class TokenRejected(AuthorizationError):
    """The refresh or offline token was rejected (expired, revoked or already used)."""


class ServerError(DeviceAuthError):
    """The authorization server could not be reached or gave an unusable answer.

    ``transient`` is true for failures worth retrying (network errors, HTTP 5xx).
    """

    transient: bool = False


class DiscoveryError(ServerError):
    """The issuer's metadata could not be found, or it lacks what the device flow needs."""


class CacheError(DeviceAuthError):
    """The token cache file cannot be read or written."""


class LockTimeout(DeviceAuthError, TimeoutError):
    """Waiting for the cache lock took longer than allowed; ``.lock_file`` names the lock."""

    lock_file: str


class InsecureTransport(DeviceAuthError, ValueError):
    """Refused to send a token over plain http to a host that is not loopback."""
