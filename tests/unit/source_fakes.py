"""A fake ``TokenSource`` for the adapter tests, so they exercise an adapter and nothing else.

It hands out ``tok-1``, then ``tok-2`` after each ``renew`` of the current token, and records
every call and, for the calls that may block, the thread it ran on (the async flows must run
those off the event loop, and only when ``fresh_token()`` has nothing).
"""

from __future__ import annotations

import threading


class FakeSource:
    """Counts calls; ``fresh=False`` makes ``fresh_token()`` answer None (a cold start)."""

    def __init__(self, *, fresh: bool = True) -> None:
        self.fresh = fresh
        self.serial = 1
        self.calls: list[tuple[str, str | None]] = []
        self.blocking_threads: list[int] = []

    @property
    def token(self) -> str:
        return f"tok-{self.serial}"

    def get_token(self) -> str:
        self._blocking("get_token", None)
        return self.token

    def fresh_token(self) -> str | None:
        self.calls.append(("fresh_token", None))
        return self.token if self.fresh else None

    def renew(self, rejected: str | None = None) -> str:
        self._blocking("renew", rejected)
        if rejected is None or rejected == self.token:
            self.serial += 1  # like the engine: a token already replaced is not replaced again
        return self.token

    def count(self, name: str) -> int:
        return sum(1 for called, _ in self.calls if called == name)

    @property
    def renewed(self) -> list[str | None]:
        """The ``rejected`` argument of every ``renew`` call."""
        return [arg for called, arg in self.calls if called == "renew"]

    def _blocking(self, name: str, arg: str | None) -> None:
        self.calls.append((name, arg))
        self.blocking_threads.append(threading.get_ident())
