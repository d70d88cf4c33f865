"""The code each process of bench_herd.py runs (a module of its own, so the forkserver can preload it)."""

from __future__ import annotations

import os
import time
from typing import Any

CLIENT_ID = "client-tools"
SCOPE = "openid"
RELEASE_TIMEOUT = 300.0  # never wait forever for the parent


def worker(
    mode: str,
    issuer: str,
    cache: str,
    token_endpoint: str,
    refresh_token: str,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """Get ready, wait for the release, then obtain a token once and report when it was held."""
    try:
        fetch = _deviceauth(issuer, cache) if mode in ("deviceauth", "redis") else _naive(token_endpoint, refresh_token)
    except BaseException as exc:  # report instead of dying silently
        ready.put({"pid": os.getpid(), "error": f"setup: {type(exc).__name__}: {exc}"})
        return
    ready.put({"pid": os.getpid(), "error": None})
    # `go` is the read end of a pipe: the parent closing the write end wakes every process at once
    # (a multiprocessing.Event would wake them one by one, each acknowledging before the next).
    if not go.poll(RELEASE_TIMEOUT):
        results.put({"pid": os.getpid(), "error": "never released", "token": None, "woke": 0.0, "done": 0.0})
        return
    woke = time.time()
    cpu = time.process_time()
    token: str | None = None
    error: str | None = None
    try:
        token = fetch()
    except Exception as exc:
        error = f"{type(exc).__name__}: {getattr(exc, 'error', '') or str(exc)[:120]}"
    done = time.time()
    cpu = time.process_time() - cpu
    results.put({"pid": os.getpid(), "error": error, "token": token, "woke": woke, "done": done, "cpu": cpu})


def _deviceauth(issuer: str, cache: str) -> Any:
    import tempfile  # noqa: F401

    import filelock  # noqa: F401

    import deviceauth._oauth  # noqa: F401
    from deviceauth import DeviceAuth

    # `import deviceauth` no longer loads the slow path's libraries (requests, Authlib, filelock,
    # tempfile); the first refresh or lock does. Load them before the release, as the naive worker
    # does and as `import deviceauth` did before, so the herd times the protocol, not first imports
    # (filelock alone is about 16 ms of CPU in each of the N processes).

    # interactive=False: a process that cannot refresh fails with LoginRequired instead of prompting.
    auth = DeviceAuth(issuer, CLIENT_ID, scope=SCOPE, cache=cache, interactive=False)
    return auth.get_token


def _naive(token_endpoint: str, refresh_token: str) -> Any:
    from authlib.integrations.requests_client import OAuth2Session

    # What a user without deviceauth writes: each process refreshes the token it read on its own.
    session = OAuth2Session(client_id=CLIENT_ID, token_endpoint_auth_method="none", default_timeout=30)

    def fetch() -> str:
        return str(session.refresh_token(token_endpoint, refresh_token=refresh_token)["access_token"])

    return fetch
