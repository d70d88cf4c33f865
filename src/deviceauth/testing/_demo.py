"""``deviceauth demo``: the library's main job, end to end, with nothing but Python.

Starts the embedded server (Keycloak-shaped, 3 s access tokens) in this process, logs in
through ``DeviceAuth`` with its normal prompt, waits for a person to approve in their own
browser (or lets the server approve by itself), then calls the protected API with requests,
HTTPX and urllib3 across several expiries and prints what the server counted.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from deviceauth._auth import DeviceAuth

from ._server import AuthServer

__all__ = ["run_demo"]

ACCESS_TTL = 3  # seconds: short, so a few seconds of calls cross several expiries
AUTO_APPROVE_AFTER = 1.0  # seconds, "as a person would"
ROUNDS = 5
PAUSE = 1.5  # seconds between rounds


def run_demo(*, auto_approve: bool, out: Any = None) -> int:
    out = out or sys.stdout
    started = time.monotonic()
    server = AuthServer(
        mode="keycloak", access_ttl=ACCESS_TTL, control=False, auto_approve=AUTO_APPROVE_AFTER if auto_approve else None
    )
    with server, tempfile.TemporaryDirectory() as tmp:
        print(f"deviceauth demo: a local Keycloak-shaped authorization server is running at {server.issuer}", file=out)
        if auto_approve:
            print(f"  It will approve the code by itself after {AUTO_APPROVE_AFTER:g} s (--auto-approve).", file=out)
        else:
            print("  Open the link below, check the code, sign in under any name and approve.", file=out)
        print(file=out, flush=True)
        auth = DeviceAuth(
            server.issuer,
            server.client_id,
            scope="openid profile",
            cache=Path(tmp, ".tokens.json"),
            interactive=True,
            open_browser=False if auto_approve else None,
        )
        auth.login()  # the prompt, exactly as users see it
        print(f"\nSigned in. Calling {server.api_url('me')} every {PAUSE:g} s; tokens live {ACCESS_TTL} s.", file=out)
        _call_rounds(auth, server, out)
        stats = server.stats()
    logins = stats["device_authorization"]
    refreshes = stats["token"].get("refresh_token", 0)
    rejected = stats["api"]["unauthorized"]
    print(
        f"\nThe server saw: {logins} login, {refreshes} refreshes, {stats['api']['ok']} API calls accepted, "
        f"{rejected} rejected ({time.monotonic() - started:.1f} s).",
        file=out,
    )
    return 0 if logins == 1 and rejected == 0 and refreshes >= 1 else 1


def _call_rounds(auth: DeviceAuth, server: AuthServer, out: Any) -> None:
    url = server.api_url("me")
    callers: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    session = requests.Session()
    session.trust_env = False  # loopback only
    callers.append(("requests", lambda: session.get(url, auth=auth, timeout=10).json()))
    client: Any = None
    if importlib.util.find_spec("httpx") is not None:
        import httpx

        client = httpx.Client(auth=auth.httpx, timeout=10, trust_env=False)
        callers.append(("HTTPX", lambda: client.get(url).json()))
    pool = auth.pool_manager()
    callers.append(("urllib3", lambda: _json(pool.request("GET", url, timeout=10.0).data)))
    try:
        for round_ in range(ROUNDS):
            if round_:
                time.sleep(PAUSE)
            seen = [(name, call()) for name, call in callers]
            # A fingerprint of the token the server received, never the token: it changes at each refresh.
            line = ", ".join(
                f"{name} as {echo.get('sub')} (token #{str(echo.get('token_sha256'))[:8]})" for name, echo in seen
            )
            print(f"  round {round_ + 1}: {line}", file=out, flush=True)
        if client is None:
            print("  (HTTPX is not installed: pip install 'deviceauth[httpx]' to see it too)", file=out)
    finally:
        session.close()
        if client is not None:
            client.close()
        pool.clear()


def _json(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    return value if isinstance(value, dict) else {}
