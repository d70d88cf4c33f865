"""Functions that child processes run for the Redis tests (a module, so spawn can import them)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import urllib.request
from dataclasses import dataclass
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


# -- engine-level workers (a DeviceAuth pickled into each process) --------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def own_home(base: str) -> None:
    """Pool initializer: this process gets a HOME and cache dir of its own, as on another machine."""
    home = Path(base, f"home-{os.getpid()}")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(home)
    os.environ["XDG_CACHE_HOME"] = str(home / ".cache")
    os.environ.pop("DEVICEAUTH_CACHE", None)


def ready(_: object) -> int:
    return os.getpid()


@dataclass
class Approve:
    """A picklable prompt: leaves a file per prompt shown, then approves the code like a person."""

    base_url: str
    marks: str
    delay: float = 0.0

    def __call__(self, code: Any) -> None:
        Path(self.marks, f"prompt-{os.getpid()}-{time.monotonic_ns()}").touch()
        time.sleep(self.delay)
        request = urllib.request.Request(
            f"{self.base_url}/__test/approve",
            data=json.dumps({"user_code": code.user_code}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with _OPENER.open(request, timeout=10) as response:
            response.read()


def call_api_until(
    auth: Any, url: str, until: float, pause: float = 0.05, limit: int = 2000, stop: str | None = None
) -> dict[str, Any]:
    """Call the protected API until ``until`` (wall clock) or the ``stop`` file; report what reached it."""
    import requests

    ok = failed = 0
    errors: list[str] = []
    tokens: set[str] = set()
    with requests.Session() as session:
        session.trust_env = False
        for _ in range(limit):
            if time.time() >= until or (stop is not None and os.path.exists(stop)):
                break
            try:
                response = session.get(url, auth=auth, timeout=10)
            except Exception as exc:
                failed += 1
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                time.sleep(pause)
                continue
            if response.status_code == 200:
                ok += 1
                tokens.add(response.json()["token_sha256"])
            else:
                failed += 1
                errors.append(f"HTTP {response.status_code}")
            time.sleep(pause)
    return {"ok": ok, "failed": failed, "errors": errors, "tokens": tokens, "home": os.environ.get("HOME")}


def get_token_hash(auth: Any) -> str:
    return hashlib.sha256(auth.get_token().encode()).hexdigest()


def refresh_forever(auth: Any, rounds: int) -> None:
    """Force a refresh (and store write) again and again, until killed or ``rounds`` run out."""
    token = auth.get_token()
    for _ in range(rounds):
        token = auth.renew(token)


def login_and_hang(auth: Any) -> None:
    """Start a device login whose prompt never gets approved (the parent kills us meanwhile)."""
    auth.login()


@dataclass
class WriteCode:
    """A picklable prompt that only writes the user code down (the test approves it when it likes)."""

    path: str

    def __call__(self, code: Any) -> None:
        Path(self.path).write_text(code.user_code)


def login_and_report(auth: Any, result: str) -> None:
    auth.login()
    Path(result).write_text(get_token_hash(auth))
