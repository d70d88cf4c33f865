"""What one process remembers per identity, shared by every ``DeviceAuth`` and adapter for it.

The registry is keyed by (store location, identity), so every object naming the same session
shares one in-memory token, one thread lock, one HTTP connection pool and, above all, one record
of a rotated token the store could not take: two objects must never refresh the same session
from two different pictures of it. Their leeways combine (the largest wins). A forked child
keeps the token (it is still valid) but gets a new lock and new connections.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ._token import Token

__all__ = ["ProcessState", "state_for"]


class ProcessState:
    """The in-memory state one process keeps for one identity."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token: Token | None = None
        self.access_token = ""
        self.header = ""  # "Bearer <access_token>", built once per token for the warm path
        self.due = 0.0  # when the access token stops being served from memory
        self.metadata: dict[str, Any] | None = None
        self.clients: dict[tuple[Any, ...], Any] = {}  # one OAuth client per distinct client configuration
        self.offline_token: str | None = None  # the latest one, if the server rotated it
        # A token the store could not take (disk full, Redis down): served and refreshed from
        # memory, and written as soon as the store works again. `store_had` is the refresh token
        # the store held when that happened, so we know whether someone else has written since.
        self.unsaved: Token | None = None
        self.store_had: str | None = None
        self.leeways: set[float | None] = set()  # of every engine on this state

    def due_of(self, token: Token) -> float:
        """When to stop serving ``token``: the earliest any engine on this state would refresh it."""
        return min(token.refresh_due_at(leeway) for leeway in self.leeways or {None})

    def forget_token(self) -> None:
        self.token, self.access_token, self.header, self.due = None, "", "", 0.0
        self.unsaved = self.store_had = None

    def forget_process_resources(self) -> None:
        # A forked child inherits this object: a lock another thread may have held at fork time,
        # and HTTP sessions whose sockets the parent still uses. The token itself stays valid.
        self.lock = threading.Lock()
        self.clients = {}


_registry: dict[tuple[Any, ...], ProcessState] = {}
_registry_lock = threading.Lock()


def state_for(location: str, identity_key: str, leeway: float | None) -> ProcessState:
    key = (location, identity_key)
    with _registry_lock:
        state = _registry.get(key)
        if state is None:
            state = _registry[key] = ProcessState()
        state.leeways.add(leeway)
        return state


def clear() -> None:
    """Forget every identity (tests start from a clean process this way)."""
    with _registry_lock:
        _registry.clear()


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for state in _registry.values():
        state.forget_process_resources()


os.register_at_fork(after_in_child=_after_fork_in_child)
