"""Many processes, one identity, on Keycloak with "Revoke Refresh Token" on and max reuse 0.

A second use of any refresh token would show up in Keycloak's own events as a
``REFRESH_TOKEN_ERROR`` ("Maximum allowed refresh token reuse exceeded").
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path

import kc_workers
from kc_approve import FormApprover
from kc_server import Keycloak

import proc_workers
from deviceauth import DeviceAuth

REALM = "rrap"
SPAWN = multiprocessing.get_context("spawn")
ACCESS_TTL = 5  # the realm's access token lifespan


def test_16_processes_refresh_once_per_expiry(kc: Keycloak, make_auth: Callable[..., DeviceAuth]) -> None:
    first = make_auth().get_token()  # one login up front, as a user would before starting a pool
    auth = make_auth(interactive=False, prompt=None)
    with SPAWN.Pool(16) as pool:
        pool.map(proc_workers.ready, range(16))  # started and imported before the clock runs
        kc.clear_events(REALM)
        until = time.time() + 3 * ACCESS_TTL + 1
        results = pool.starmap(kc_workers.call_userinfo_until, [(auth, kc.userinfo_url(REALM), until)] * 16)
    tally = proc_workers.Tally()
    for result in results:
        tally.merge(result)
    events = kc.count(REALM)
    print("Keycloak events:", events)
    assert tally.failed == 0, tally.errors[:5]
    assert tally.ok >= 16 * 10
    refreshes = events.get("REFRESH_TOKEN", 0)
    assert refreshes >= 3  # three expiries crossed
    assert events.get("REFRESH_TOKEN_ERROR", 0) == 0
    # one refresh per expiry: every refresh produced a token the workers then used
    assert refreshes == len(tally.tokens - {hashlib.sha256(first.encode()).hexdigest()})
    assert events.get("OAUTH2_DEVICE_CODE_TO_TOKEN", 0) == 0
    assert events.get("USER_INFO_REQUEST", 0) == tally.ok


def test_8_cold_processes_log_in_once(kc: Keycloak, make_auth: Callable[..., DeviceAuth], tmp_path: Path) -> None:
    marks = tmp_path / "prompts"
    marks.mkdir()
    auth = make_auth(prompt=FormApprover(marks=str(marks)))
    with SPAWN.Pool(8) as pool:
        pool.map(proc_workers.ready, range(8))
        kc.clear_events(REALM)
        hashes = pool.map(proc_workers.get_token_hash, [auth] * 8)
    events = kc.count(REALM)
    print("Keycloak events:", events)
    assert len(list(marks.iterdir())) == 1  # one prompt shown, in one process
    assert events.get("OAUTH2_DEVICE_VERIFY_USER_CODE", 0) == 1
    assert events.get("OAUTH2_DEVICE_CODE_TO_TOKEN", 0) == 1
    assert events.get("REFRESH_TOKEN", 0) == 0
    assert len(set(hashes)) == 1  # everyone picked up the same login


def test_4_unattended_processes_share_one_offline_token(
    kc: Keycloak, make_auth: Callable[..., DeviceAuth], tmp_path: Path
) -> None:
    # With "Revoke Refresh Token" on, Keycloak rotates offline tokens too, and a second use of one
    # ends the offline session. store_offline_token=True lets every process see the newest one.
    setup = make_auth(scope="openid offline_access", cache=tmp_path / "person" / ".tokens.json")
    setup.get_token()
    person = setup.cached_token()
    assert person is not None and person.refresh_token
    job = make_auth(
        scope="openid offline_access",
        cache=tmp_path / "job" / ".tokens.json",
        interactive=False,
        prompt=None,
        offline_token=person.refresh_token,
        store_offline_token=True,
    )
    with SPAWN.Pool(4) as pool:
        pool.map(proc_workers.ready, range(4))
        kc.clear_events(REALM)
        until = time.time() + 2 * ACCESS_TTL + 1
        results = pool.starmap(kc_workers.call_userinfo_until, [(job, kc.userinfo_url(REALM), until)] * 4)
    tally = proc_workers.Tally()
    for result in results:
        tally.merge(result)
    events = kc.count(REALM)
    print("Keycloak events:", events)
    assert tally.failed == 0, tally.errors[:5]
    assert events.get("REFRESH_TOKEN", 0) >= 2
    assert events.get("REFRESH_TOKEN", 0) == len(tally.tokens)  # one redemption, then one refresh per expiry
    assert events.get("REFRESH_TOKEN_ERROR", 0) == 0
    assert events.get("OAUTH2_DEVICE_CODE_TO_TOKEN", 0) == 0
