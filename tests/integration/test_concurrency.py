"""Many processes and threads, one identity: single-flight refresh and login, counted at the server.

The server rotates refresh tokens and revokes the whole grant when a consumed one is reused,
so a single duplicate refresh would show up as ``invalid_grant`` and failed API calls.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import signal
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import filelock
import pytest

import proc_workers
from deviceauth import DeviceAuth
from deviceauth.store import FileStore
from oidc_server import ACCESS_TTL, OidcServer

REFRESH = "refresh_token"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


SPAWN = multiprocessing.get_context("spawn")
FORK = multiprocessing.get_context("fork")


def _assert_one_refresh_per_expiry(
    server: OidcServer, tally: proc_workers.Tally, min_expiries: int, first_token: str
) -> None:
    stats = server.stats()
    refreshes = stats["token"].get(REFRESH, 0)
    assert tally.failed == 0, tally.errors[:5]
    assert stats["token_errors"].get("invalid_grant", 0) == 0
    assert stats["api"]["unauthorized"] == 0
    assert refreshes >= min_expiries
    # Each refresh produced a token that callers then used: no refresh was wasted or duplicated.
    assert refreshes == len(tally.tokens - {_sha256(first_token)})
    assert stats["device_authorization"] == 0


def test_16_processes_across_expiries_refresh_once_per_expiry(
    server: OidcServer, make_auth: Callable[..., DeviceAuth]
) -> None:
    auth = make_auth(interactive=False, prompt=None)  # the test's approver holds the server: not picklable
    first_token = make_auth().get_token()  # one login up front, as a user would before starting a pool
    with SPAWN.Pool(16) as pool:
        pool.map(proc_workers.ready, range(16))  # workers started and imported before the clock runs
        server.reset_stats()
        until = time.time() + 3 * ACCESS_TTL
        results = pool.starmap(proc_workers.call_api_until, [(auth, server.api_url(), until)] * 16)
    tally = proc_workers.Tally()
    for result in results:
        tally.merge(result)
    assert tally.ok >= 16 * 10
    _assert_one_refresh_per_expiry(server, tally, min_expiries=3, first_token=first_token)


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    """Where the picklable prompt leaves one file per prompt shown, in any process."""
    path = tmp_path / "prompts"
    path.mkdir()
    return path


def test_8_processes_on_a_cold_cache_log_in_once(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], marks: Path
) -> None:
    auth = make_auth(prompt=proc_workers.MarkingApprover(server.base_url, str(marks)))
    with SPAWN.Pool(8) as pool:
        pool.map(proc_workers.ready, range(8))
        hashes = pool.map(proc_workers.get_token_hash, [auth] * 8)
    assert len(list(marks.iterdir())) == 1  # one prompt shown
    assert server.stats()["device_authorization"] == 1
    assert server.stats()["token"].get(REFRESH, 0) == 0
    assert len(set(hashes)) == 1  # everyone picked up the same login


def test_waiter_that_may_not_prompt_never_prompts(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], marks: Path
) -> None:
    prompting = make_auth(prompt=proc_workers.MarkingApprover(server.base_url, str(marks)))
    silent = make_auth(interactive=False, prompt=None)
    with SPAWN.Pool(4) as pool:
        pool.map(proc_workers.ready, range(4))
        results = [pool.apply_async(proc_workers.get_token_hash, (prompting,))]
        time.sleep(0.3)  # the login is under way and holds the lock
        results += [pool.apply_async(proc_workers.get_token_hash, (silent,)) for _ in range(3)]
        hashes = [result.get(timeout=60) for result in results]
    assert len(set(hashes)) == 1  # the waiters adopted the login instead of failing
    assert len(list(marks.iterdir())) == 1
    assert server.stats()["device_authorization"] == 1


def test_32_threads_share_one_refresh_per_expiry(server: OidcServer, make_auth: Callable[..., DeviceAuth]) -> None:
    auth = make_auth()
    first_token = auth.get_token()
    server.reset_stats()
    until = time.time() + 3 * ACCESS_TTL
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda _: proc_workers.call_api_until(auth, server.api_url(), until), range(32)))
    tally = proc_workers.Tally()
    for result in results:
        tally.merge(result)
    _assert_one_refresh_per_expiry(server, tally, min_expiries=3, first_token=first_token)


@pytest.mark.parametrize("context", [FORK, SPAWN], ids=["fork", "spawn"])
def test_pickled_auth_works_in_pool_children(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], context: multiprocessing.context.BaseContext
) -> None:
    make_auth().get_token()
    auth = make_auth(prompt=None)  # the parent has a live session, lock state and HTTP connections
    server.reset_stats()
    with context.Pool(4) as pool:  # type: ignore[attr-defined]
        statuses = pool.starmap(proc_workers.call_api_once, [(auth, server.api_url())] * 8)
    assert statuses == [200] * 8
    assert server.stats()["token"] == {}  # children adopted the cached token
    with ProcessPoolExecutor(2, mp_context=context) as executor:
        assert list(executor.map(proc_workers.call_api_once, [auth] * 2, [server.api_url()] * 2)) == [200, 200]


def test_kill_9_during_refresh_and_write_never_corrupts_or_sticks(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], cache_file: Path
) -> None:
    auth = make_auth()
    auth.get_token()
    make_auth(scope="openid profile").get_token()
    key = f"{server.issuer} client-tools openid"
    bystander_key = f"{server.issuer} client-tools openid profile"
    bystander_entry = json.loads(cache_file.read_text())["identities"][bystander_key]
    server.reset_stats()
    rng = random.Random(8628)
    rounds = 50
    for _ in range(rounds):
        child = FORK.Process(target=proc_workers.refresh_forever, args=(auth, 10_000))
        child.start()
        time.sleep(rng.uniform(0.01, 0.12))  # the child refreshes and writes every few ms
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(timeout=10)
        assert child.exitcode == -signal.SIGKILL

        identities = json.loads(cache_file.read_text())["identities"]  # always parses
        assert key in identities, (_, server.stats())  # the identity being refreshed is still there
        assert identities[bystander_key] == bystander_entry  # and another identity is untouched
        with filelock.FileLock(FileStore(cache_file).lock_path, timeout=1):
            pass  # no lock stays stuck
        # A kill after the server rotated the refresh token but before the new one reached the
        # disk costs the session (reuse detection revokes it): the next caller logs in again.
        successor = FORK.Process(target=proc_workers.force_refresh, args=(auth,))
        successor.start()
        successor.join(timeout=30)
        assert successor.exitcode == 0

    stats = server.stats()
    refreshes, lost = stats["token"].get(REFRESH, 0), stats["token_errors"].get("invalid_grant", 0)
    print(f"kill -9 loop: {rounds} kills, {refreshes} refreshes, {lost} sessions lost in the rotation window")
    assert refreshes >= 2 * rounds  # the kills really landed amid refresh traffic
    assert lost == stats["device_authorization"]  # every lost session was recovered by exactly one login
    assert proc_workers.call_api_once(auth, server.api_url()) == 200
    leftovers = [p.name for p in cache_file.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []  # stray temp files from killed writers were cleaned up by the next write


def test_lock_holders_never_overlap(cache_file: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "holds.log"
    processes = [
        SPAWN.Process(target=proc_workers.log_lock_holds, args=(str(cache_file), str(log_path), 25, 0.002))
        for _ in range(8)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    lines = log_path.read_text().split()
    assert len(lines) == 8 * 25 * 2
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):
        assert enter.startswith("<") and leave == ">" + enter[1:], "two processes held the lock at once"


def test_two_identities_written_concurrently_lose_no_update(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], cache_file: Path
) -> None:
    make_auth().get_token()
    make_auth(scope="openid email").get_token()
    first, second = make_auth(prompt=None), make_auth(scope="openid email", prompt=None)
    with SPAWN.Pool(2) as pool:
        results = [pool.apply_async(proc_workers.write_identity_rounds, (auth, 20)) for auth in (first, second)]
        last = [result.get(timeout=120) for result in results]
    identities = json.loads(cache_file.read_text())["identities"]

    stored = [
        hashlib.sha256(identities[key]["token"]["access_token"].encode()).hexdigest()
        for key in (f"{server.issuer} client-tools openid", f"{server.issuer} client-tools email openid")
    ]
    assert stored == last  # each identity holds the last token its writer obtained
    assert server.stats()["token_errors"].get("invalid_grant", 0) == 0


def test_killed_lock_holder_frees_the_lock(cache_file: Path, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    child = SPAWN.Process(target=proc_workers.hold_lock_then_sleep, args=(str(cache_file), str(ready), 60))
    child.start()
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists()
    os.kill(child.pid or 0, signal.SIGKILL)
    child.join(timeout=10)
    started = time.monotonic()
    with FileStore(cache_file, lock_timeout=5).transaction(proc_workers.LOCK_PROBE):
        pass
    assert time.monotonic() - started < 2
