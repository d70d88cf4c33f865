"""The errors deviceauth raises.

    DeviceAuthError
    ├── LoginRequired                  no usable token and prompting is not allowed
    ├── AuthorizationError             the authorization server said no
    │   ├── AccessDenied               the person declined the request
    │   ├── DeviceCodeExpired          nobody approved the code in time
    │   └── TokenRejected              the refresh/offline token is no longer valid
    ├── ServerError                    the server is unreachable or answered nonsense
    │   └── DiscoveryError             no usable metadata (or no device flow) at the issuer
    ├── CacheError                     the token store cannot be read or written
    ├── LockTimeout(TimeoutError)      another process held the store's lock too long
    └── InsecureTransport(ValueError)  a token would go over plain http to a remote host

Each class has a fixed constructor whose details are keyword-only and always set (``None``
when unknown), so code that catches an error can read its attributes without ``getattr``.
Messages never contain token values and say what to do next. Every error pickles (worker
processes send them back to their parents): ``__reduce__`` replays the constructor.
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

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def _details(self) -> dict[str, Any]:
        return {}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self._details()))


def _rebuild(cls: type[DeviceAuthError], message: str, details: dict[str, Any]) -> DeviceAuthError:
    return cls(message, **details)


class LoginRequired(DeviceAuthError):
    """No valid token is available and this caller may not prompt a person.

    ``command`` is the ``deviceauth login ...`` command line that fixes it (also in the message).
    """

    def __init__(
        self, message: str, *, issuer: str | None = None, client_id: str | None = None, command: str | None = None
    ) -> None:
        super().__init__(message)
        self.issuer = issuer
        self.client_id = client_id
        self.command = command

    def _details(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "client_id": self.client_id, "command": self.command}


class AuthorizationError(DeviceAuthError):
    """The authorization server refused; ``error`` holds the OAuth error code."""

    def __init__(self, message: str, *, error: str = "") -> None:
        super().__init__(message)
        self.error = error

    def _details(self) -> dict[str, Any]:
        return {"error": self.error}


class AccessDenied(AuthorizationError):
    """The person declined the device authorization request."""


class DeviceCodeExpired(AuthorizationError):
    """The device code expired before anyone approved it."""


class TokenRejected(AuthorizationError):
    """The refresh or offline token was rejected (expired, revoked or already used)."""


class ServerError(DeviceAuthError):
    """The authorization server could not be reached or gave an unusable answer.

    ``url`` is the origin involved (``scheme://host:port``, never a path or credentials);
    ``transient`` is true for failures worth retrying (network errors, timeouts, HTTP 5xx, a body
    cut short); ``error`` is the OAuth error code when the server sent one (``server_error``,
    ``temporarily_unavailable``).
    """

    def __init__(
        self, message: str, *, url: str | None = None, transient: bool = False, error: str | None = None
    ) -> None:
        super().__init__(message)
        self.url = url
        self.transient = transient
        self.error = error

    def _details(self) -> dict[str, Any]:
        return {"url": self.url, "transient": self.transient, "error": self.error}


class DiscoveryError(ServerError):
    """The issuer's metadata could not be found, or it lacks what the device flow needs."""


class CacheError(DeviceAuthError):
    """The token store cannot be read or written; ``path`` names the file or store."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def _details(self) -> dict[str, Any]:
        return {"path": self.path}


class LockTimeout(DeviceAuthError, TimeoutError):
    """Waiting for the store's lock took longer than allowed; ``lock_file`` names the lock."""

    def __init__(self, message: str, *, lock_file: str) -> None:
        super().__init__(message)
        self.lock_file = lock_file

    def _details(self) -> dict[str, Any]:
        return {"lock_file": self.lock_file}


class InsecureTransport(DeviceAuthError, ValueError):
    """Refused to send a token or credential over plain http to a remote host, or to an unsafe URL."""


class AuthorizationPending(Exception):
    """Internal, never raised to users: the person has not answered yet.

    ``slow`` is true when the server asked us to poll more slowly (RFC 8628 ``slow_down``).
    """

    def __init__(self, slow: bool) -> None:
        super().__init__("slow_down" if slow else "authorization_pending")
        self.slow = slow


# Tracebacks name the public home (``deviceauth.LoginRequired``) even when the package's lazy
# attributes were never touched.
for _name in __all__:
    globals()[_name].__module__ = "deviceauth"
del _name
