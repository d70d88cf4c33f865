"""Functions that child processes run for the Redis tests (a module, so spawn can import them)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from deviceauth._settings import Identity
from deviceauth._store import StaleWrite, TokenStore
from deviceauth._token import Token

IDENTITY = Identity("https://issuer.example/realms/test", "client-tools", "openid")
WAIT_LIMIT = 60.0


def token(name: str, *, refresh: str | None = None, life: float = 300.0) -> Token:
    now = time.time()
    return Token(
        access_token=f"access-{name}",
        expires_at=now + life,
        obtained_at=now,
        refresh_token=refresh if refresh is not None else f"refresh-{name}",
    )


def wait_for(path: Path, limit: float = WAIT_LIMIT) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)


def log_holds(store: TokenStore, log_path: str, rounds: int, hold: float) -> None:
    """Append ``<pid`` on entering and ``>pid`` on leaving the transaction (msal-extensions' check)."""
    pid = os.getpid()
    for _ in range(rounds):
        with store.transaction(IDENTITY), open(log_path, "a") as log:
            log.write(f"<{pid}\n")
            log.flush()
            time.sleep(hold)
            log.write(f">{pid}\n")


def hold_then_put(store: TokenStore, ready: str, go: str, result: str) -> None:
    """Take the lock, say so, wait for ``go`` (the parent pauses us meanwhile), then try to write."""
    with store.transaction(IDENTITY) as tx:
        started_from = tx.token.refresh_token if tx.token is not None else None  # type: ignore[union-attr]
        Path(ready).touch()
        wait_for(Path(go))
        outcome: dict[str, Any] = {"started_from": started_from}
        try:
            tx.put(token("paused"), replacing=started_from)  # type: ignore[union-attr]
            outcome["wrote"] = True
        except StaleWrite:
            outcome["wrote"] = False
    Path(result).write_text(json.dumps(outcome))


def hold_forever(store: TokenStore, ready: str, login_for: float) -> None:
    """Take the lock (and, if asked, show a login) and never let go, until killed."""
    with store.transaction(IDENTITY) as tx, contextlib.ExitStack() as login:
        if login_for:
            login.enter_context(tx.login_marker(time.time() + login_for))  # type: ignore[union-attr]
        Path(ready).touch()
        time.sleep(WAIT_LIMIT)
