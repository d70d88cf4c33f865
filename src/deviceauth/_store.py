"""The seam between the token policy and wherever tokens live.

    TokenStore                          one per location (a file, a Redis database + prefix, ...)
      .location                         stable name: keys the per-process state, shown in messages
      .version()                        cheap "changed since?" value, compared by the store itself
      .read(identity)                   lock-free read of one identity's token (None: nothing usable)
      .metadata(issuer)                 cached discovery document of an issuer, lock-free
      .transaction(identity, ...)       hold the store's lock and read again  ──►  Transaction
                                        or, while waiting, learn that the holder wrote a token the
                                        caller can use  ──►  Written(token), without the lock
      .login_in_progress()              who is showing a login prompt right now, if anyone
      .records()                        every stored identity and token (for ``deviceauth status``)
      .forget(identity)                 remove one identity outside any refresh (``logout``)

    Transaction (only while the lock is held)
      .token, .metadata                 as re-read under the lock
      .put(token, replacing=..., ...)   write; refuses (``StaleWrite``) if the stored refresh token is
                                        no longer the one this holder started from (fencing)
      .delete(unless_changed_from=...)  compare-and-delete
      .login_marker(expires_at)         context manager advertising a login in progress
      .keep_alive()                     extend a lock that expires by itself (a no-op for flock)

The policy (``_engine``) knows nothing of files, JSON or Redis: it reads, decides, and writes
through these calls. ``FileStore`` (``.tokens.json`` + filelock) is the default; ``RedisStore``
serves many hosts. A store pickles as the way to reopen it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._settings import Identity
from ._token import Token

__all__ = [
    "LoginInProgress",
    "Record",
    "StaleWrite",
    "TokenStore",
    "Transaction",
    "Written",
]

@dataclass(frozen=True, slots=True)
class Record:
    """One stored identity and its token."""

    identity: Identity
    token: Token


@dataclass(frozen=True, slots=True)
class Written:
    """While we waited for the lock, its holder wrote this token, which the caller said it can use."""

    token: Token


class StaleWrite(Exception):
    """Internal: the store changed under a holder whose lock had expired; its write was refused."""


@dataclass(frozen=True, slots=True)
class LoginInProgress:
    """Advertised while a device login holds the lock, so waiters know why, and where it is shown."""

    pid: int
    host: str
    expires_at: float

    def alive(self, now: float) -> bool:
        if now >= self.expires_at:
            return False
        import socket

        if self.host != socket.gethostname():
            return True  # another host: trust the expiry (its lock expires if it died)
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoginInProgress:
        return cls(pid=int(data["pid"]), host=str(data["host"])[:255], expires_at=float(data["expires_at"]))

    @classmethod
    def here(cls, expires_at: float) -> LoginInProgress:
        import socket

        return cls(pid=os.getpid(), host=socket.gethostname(), expires_at=expires_at)

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "host": self.host, "expires_at": self.expires_at}


class Transaction(Protocol):
    """The store as re-read under its lock, and the only way to change it."""

    @property
    def token(self) -> Token | None: ...

    @property
    def metadata(self) -> dict[str, Any] | None: ...

    def put(self, token: Token, *, replacing: str | None, metadata: Mapping[str, Any] | None = None) -> None: ...

    def delete(self, *, unless_changed_from: str | None) -> bool: ...

    def login_marker(self, expires_at: float) -> AbstractContextManager[None]: ...

    def keep_alive(self) -> None: ...


@runtime_checkable
class TokenStore(Protocol):
    """Where tokens live; see the module docstring for the contract."""

    @property
    def location(self) -> str: ...

    def version(self) -> Hashable: ...

    def read(self, identity: Identity) -> Token | None: ...

    def metadata(self, issuer: str) -> dict[str, Any] | None: ...

    def transaction(
        self,
        identity: Identity,
        *,
        since: Hashable = None,
        usable: Callable[[Token], bool] | None = None,
        on_wait: Callable[[LoginInProgress], None] | None = None,
    ) -> AbstractContextManager[Transaction | Written]: ...

    def login_in_progress(self) -> LoginInProgress | None: ...

    def records(self) -> Iterator[Record]: ...

    def forget(self, identity: Identity) -> Token | None: ...
