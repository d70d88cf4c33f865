"""Functions that run in child processes for the concurrency tests (importable under spawn).

They talk to the test server only through plain URLs, and report what they saw back to the
parent; the parent compares that with the server's own counters.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import requests

from deviceauth import DeviceAuth, DeviceCode
from deviceauth.store import FileStore, Identity

# Any identity: the lock tests only need the store's lock.
LOCK_PROBE = Identity("https://lock-probe.invalid", "lock-probe", None)
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def approve(base_url: str, user_code: str) -> None:
    request = urllib.request.Request(
        f"{base_url}/__test/approve",
        data=json.dumps({"user_code": user_code}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with _OPENER.open(request, timeout=10) as response:
        response.read()


@dataclass
class MarkingApprover:
    """A picklable prompt: leaves a file per prompt shown, then approves like a person would."""

    base_url: str
    marks: str

    def __call__(self, code: DeviceCode) -> None:
        Path(self.marks, f"prompt-{os.getpid()}-{time.monotonic_ns()}").touch()
        approve(self.base_url, code.user_code)


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)

    def merge(self, other: Tally) -> None:
        self.ok += other.ok
        self.failed += other.failed
        self.errors.extend(other.errors)
        self.tokens |= other.tokens


def call_api_until(auth: DeviceAuth, url: str, until: float, pause: float = 0.05, limit: int = 2000) -> Tally:
    """Call the protected API until ``until`` (wall clock), recording which tokens reached it."""
    tally = Tally()
    with requests.Session() as session:
        for _ in range(limit):
            if time.time() >= until:
                break
            try:
                response = session.get(url, auth=auth, timeout=10)
            except Exception as exc:
                tally.failed += 1
                tally.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if response.status_code == 200:
                tally.ok += 1
                tally.tokens.add(response.json()["token_sha256"])
            else:
                tally.failed += 1
                tally.errors.append(f"HTTP {response.status_code}")
            time.sleep(pause)
    return tally


def get_token_hash(auth: DeviceAuth) -> str:
    return hashlib.sha256(auth.get_token().encode()).hexdigest()


def call_api_once(auth: DeviceAuth, url: str) -> int:
    return requests.get(url, auth=auth, timeout=10).status_code


def refresh_forever(auth: DeviceAuth, rounds: int) -> None:
    """Force a refresh (and cache write) again and again, until killed or ``rounds`` run out."""
    token = auth.get_token()
    for _ in range(rounds):
        token = auth.renew(token)


def log_lock_holds(cache_path: str, log_path: str, rounds: int, hold: float) -> None:
    """Append ``<pid`` on entering and ``>pid`` on leaving the cache lock, as msal-extensions' test does."""
    cache = FileStore(cache_path, lock_timeout=60)
    pid = os.getpid()
    for _ in range(rounds):
        with cache.transaction(LOCK_PROBE), open(log_path, "a") as log:
            log.write(f"<{pid}\n")
            log.flush()
            time.sleep(hold)
            log.write(f">{pid}\n")


def hold_lock_then_sleep(cache_path: str, ready: str, seconds: float) -> None:
    cache = FileStore(cache_path)
    with cache.transaction(LOCK_PROBE):
        Path(ready).touch()
        time.sleep(seconds)


def write_identity_rounds(auth: DeviceAuth, rounds: int) -> str:
    """Refresh one identity ``rounds`` times; return the hash of the last token it obtained."""
    token = auth.get_token()
    for _ in range(rounds):
        token = auth.renew(token)
    return hashlib.sha256(token.encode()).hexdigest()


def silence_stderr() -> None:
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)


def ready(_: object) -> int:
    """Warm-up task: returns once the worker process has started and imported deviceauth."""
    return os.getpid()


def force_refresh(auth: DeviceAuth) -> None:
    """What the next process does: start from the cache and refresh (logging in again if the session is gone)."""
    # A forked child remembers the parent's token. Renewing that one adopts what the store holds
    # now (as a new process would start); renewing the stored one refreshes it.
    auth.renew(auth.renew(auth.get_token()))
