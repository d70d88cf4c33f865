"""Functions that run in worker processes against Keycloak (importable under spawn).

Like tests/proc_workers.py (whose ``Tally`` and ``ready`` they reuse), but the protected
resource is Keycloak's userinfo endpoint, which does not echo the token: the worker records
the ``Authorization`` header requests actually sent.
"""

from __future__ import annotations

import hashlib
import time

import requests

from deviceauth import DeviceAuth
from proc_workers import Tally


def call_userinfo_until(auth: DeviceAuth, url: str, until: float, pause: float = 0.1, limit: int = 1000) -> Tally:
    tally = Tally()
    with requests.Session() as session:
        session.trust_env = False
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
                sent = response.request.headers["Authorization"].removeprefix("Bearer ")
                tally.tokens.add(hashlib.sha256(sent.encode()).hexdigest())
            else:
                tally.failed += 1
                tally.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
            time.sleep(pause)
    return tally
