"""``TokenSource``: the narrow interface every adapter uses to get a token.

Adapters (requests, HTTPX, httpx2, urllib3) hold a ``TokenSource`` and know nothing else
about tokens: not the engine, not the store. ``DeviceAuth`` is one; an SDK can supply its own.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["TokenSource"]


@runtime_checkable
class TokenSource(Protocol):
    """Where an adapter gets bearer tokens."""

    def get_token(self) -> str:
        """A valid access token now; may block (read the store, refresh, or log in)."""
        ...

    def fresh_token(self) -> str | None:
        """The in-memory token if it is fresh, else None; never blocks (safe on an event loop)."""
        ...

    def renew(self, rejected: str | None = None) -> str:
        """A token other than ``rejected`` (which the API answered 401 to), refreshing if needed."""
        ...
