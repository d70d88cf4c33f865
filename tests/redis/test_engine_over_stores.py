"""The engine over both stores, with real processes against the rotating, reuse-detecting server.

The file store shares one ``.tokens.json``; the Redis store gives every process its own HOME and
cache directory, so the processes share nothing but Redis, as separate machines would. Counts
are taken at the server: a duplicate refresh would show as ``invalid_grant`` and failed calls.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis_server
import redis_workers

from deviceauth import DeviceAuth
from deviceauth._exceptions import CacheError, LoginRequired
from deviceauth.store import Identity
from oidc_server import ACCESS_TTL, Approver, OidcServer

pytestmark = pytest.mark.integration

SPAWN = multiprocessing.get_context("spawn")
JOIN = 30.0
CLIENT = "client-tools"


@pytest.fixture(scope="module")
def oidc() -> Iterator[OidcServer]:
    with OidcServer(mode="keycloak", access_ttl=ACCESS_TTL) as server:
        yield server


@pytest.fixture
def server(oidc: OidcServer) -> OidcServer:
    oidc.revoke_all()
    oidc.reset_stats()
    return oidc


@pytest.fixture(params=["file", "redis"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What every process passes as ``cache=``: one shared file, or one Redis URL."""
    if request.param == "file":
        return str(tmp_path / "shared" / ".tokens.json")
    return str(request.getfixturevalue("redis_url")) + "?lock_ttl=2"


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    path = tmp_path / "prompts"
    path.mkdir()
    return path


def _auth(server: OidcServer, cache: str, **options: Any) -> DeviceAuth:
    defaults: dict[str, Any] = {"scope": "openid", "cache": cache, "interactive": False, "open_browser": False}
    return DeviceAuth(server.issuer, CLIENT, **{**defaults, **options})


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"ok": 0, "failed": 0, "errors": [], "tokens": set(), "homes": set()}
    for r in results:
        total["ok"] += r["ok"]
        total["failed"] += r["failed"]
        total["errors"] += r["errors"]
        total["tokens"] |= r["tokens"]
        total["homes"].add(r["home"])
    return total


def test_16_processes_share_one_refresh_per_expiry(server: OidcServer, cache: str, tmp_path: Path) -> None:
    first = _auth(server, cache, interactive=True, prompt=Approver(server)).get_token()  # one login up front
    auth = _auth(server, cache)
    with SPAWN.Pool(16, initializer=redis_workers.own_home, initargs=(str(tmp_path / "homes"),)) as pool:
        pool.map(redis_workers.ready, range(16))
        server.reset_stats()
        # Until the server has seen 3 expiries' refreshes (bounded), whatever the machine's load.
        stop = tmp_path / "stop"
        args = (auth, server.api_url(), time.time() + 60, 0.05, 5000, str(stop))
        running = pool.starmap_async(redis_workers.call_api_until, [args] * 16)
        deadline = time.monotonic() + 60
        while server.stats()["token"].get("refresh_token", 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(ACCESS_TTL / 2)  # and the calls that use the third refresh's token
        stop.touch()
        results = running.get(JOIN)
    total = _merge(results)
    stats = server.stats()
    refreshes = stats["token"].get("refresh_token", 0)
    assert total["failed"] == 0, total["errors"][:5]
    assert total["ok"] >= 16 * 10
    assert len(total["homes"]) == 16  # every process had its own HOME
    assert stats["token_errors"].get("invalid_grant", 0) == 0
    assert stats["api"]["unauthorized"] == 0
    assert refreshes >= 3
    assert refreshes == len(total["tokens"] - {_sha256(first)})  # each refresh's token was used: none wasted
    assert stats["device_authorization"] == 0


def test_8_cold_processes_log_in_once(server: OidcServer, cache: str, tmp_path: Path, marks: Path) -> None:
    auth = _auth(server, cache, interactive=True, prompt=redis_workers.Approve(server.base_url, str(marks), 0.5))
    with SPAWN.Pool(8, initializer=redis_workers.own_home, initargs=(str(tmp_path / "homes"),)) as pool:
        pool.map(redis_workers.ready, range(8))
        hashes = pool.map(redis_workers.get_token_hash, [auth] * 8)
    assert len(set(hashes)) == 1
    assert server.stats()["device_authorization"] == 1
    assert len(list(marks.iterdir())) == 1


def test_the_warm_path_makes_no_redis_round_trip(
    server: OidcServer, redis_srv: redis_server.RedisServer, redis_url: str
) -> None:
    auth = _auth(server, redis_url, interactive=True, prompt=Approver(server))
    auth.get_token()
    admin = redis_srv.admin()

    def commands() -> int:
        stats = admin.info("commandstats")
        return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info",))

    before = commands()
    for _ in range(1000):
        auth.get_token()
    assert commands() == before


def test_a_killed_refresher_is_taken_over(server: OidcServer, cache: str, tmp_path: Path, marks: Path) -> None:
    prompt = redis_workers.Approve(server.base_url, str(marks))
    _auth(server, cache, interactive=True, prompt=prompt).get_token()
    proc = SPAWN.Process(target=redis_workers.refresh_forever, args=(_auth(server, cache), 10_000))
    proc.start()
    try:
        deadline = time.monotonic() + JOIN
        while server.stats()["token"].get("refresh_token", 0) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # somewhere in a refresh: holding the lock, mid-request or mid-write
        proc.join(JOIN)
    # A fresh process (nothing in memory) takes over within the lock's expiry; if the kill landed
    # after the server rotated the refresh token but before the write, it logs in again (once).
    fresh = _auth(server, cache, interactive=True, prompt=prompt, lock_timeout=20)
    token = fresh.renew(fresh.get_token())
    assert redis_workers.call_api_until(fresh, server.api_url(), time.time() + 0.3)["failed"] == 0
    assert token
    assert server.stats()["device_authorization"] <= 2


def test_a_killed_login_is_taken_over(server: OidcServer, cache: str, marks: Path) -> None:
    never = redis_workers.Approve(server.base_url, str(marks), delay=600)  # the person never answers
    proc = SPAWN.Process(target=redis_workers.login_and_hang, args=(_auth(server, cache, prompt=never),))
    proc.start()
    try:
        deadline = time.monotonic() + JOIN
        while not any(marks.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(marks.iterdir())
        assert _auth(server, cache).store.login_in_progress() is not None
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(JOIN)
    auth = _auth(server, cache, interactive=True, prompt=Approver(server), lock_timeout=20)
    assert auth.get_token()
    assert server.stats()["device_authorization"] == 2


def test_redis_restarted_empty_means_typed_errors_then_one_clean_login(
    server: OidcServer, redis_srv: redis_server.RedisServer, redis_url: str
) -> None:
    auth = _auth(server, redis_url + "?socket_timeout=2", interactive=True, prompt=Approver(server))
    first = auth.get_token()
    redis_srv.stop()
    assert auth.get_token() == first  # fresh in memory: served without Redis
    for _ in range(3):
        with pytest.raises(CacheError, match="cannot reach Redis") as caught:
            auth.renew(auth.get_token())  # needs the store's lock: Redis is down
        assert redis_srv.password not in str(caught.value)
    redis_srv.start()  # empty: the session is gone from the store
    token = auth.get_token()
    for _ in range(3):
        token = auth.renew(token)
    assert redis_workers.call_api_until(auth, server.api_url(), time.time() + 0.3)["failed"] == 0
    stats = server.stats()
    assert stats["token_errors"].get("invalid_grant", 0) == 0
    assert stats["device_authorization"] <= 2


def test_the_readme_recipe_log_in_once_then_workers_use_the_url(
    server: OidcServer, redis_srv: redis_server.RedisServer, redis_db: int, tmp_path: Path
) -> None:
    # The URL carries no password: the shell and the workers get it from the environment.
    url = f"redis://deviceauth@127.0.0.1:{redis_srv.port}/{redis_db}"
    env = {**os.environ, "DEVICEAUTH_REDIS_PASSWORD": redis_srv.password, "HOME": str(tmp_path / "nohome")}
    env.pop("DEVICEAUTH_CACHE", None)
    worker = _auth(server, url)
    os.environ["DEVICEAUTH_REDIS_PASSWORD"] = redis_srv.password
    try:
        with pytest.raises(LoginRequired) as caught:
            _auth(server, url).get_token()
        assert f"--cache {url}/deviceauth:" in str(caught.value)
        assert redis_srv.password not in str(caught.value)
        # "deviceauth login --cache <that location>" on the head node (approved by the test's person):
        head = _auth(server, caught.value.command.split("--cache ")[1], interactive=True, prompt=Approver(server))  # type: ignore[attr-defined]
        head.login()
    finally:
        del os.environ["DEVICEAUTH_REDIS_PASSWORD"]
    status = subprocess.run(
        [sys.executable, "-m", "deviceauth", "status", "--cache", url],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert CLIENT in status.stdout and redis_srv.password not in status.stdout + status.stderr
    with SPAWN.Pool(2, initializer=_with_password, initargs=(redis_srv.password,)) as pool:
        hashes = pool.map(redis_workers.get_token_hash, [worker] * 2)
    assert len(set(hashes)) == 1
    assert server.stats()["device_authorization"] == 1


def _with_password(password: str) -> None:
    os.environ["DEVICEAUTH_REDIS_PASSWORD"] = password


def test_a_login_paused_past_its_lock_cannot_overwrite_the_newer_session(
    server: OidcServer, redis_url: str, tmp_path: Path
) -> None:
    url = redis_url + "?lock_ttl=0.5"
    code, result = tmp_path / "code", tmp_path / "result"
    paused = _auth(server, url, interactive=True, prompt=redis_workers.WriteCode(str(code)))
    proc = SPAWN.Process(target=redis_workers.login_and_report, args=(paused, str(result)))
    proc.start()
    try:
        redis_workers.wait_for(code, JOIN)  # it holds the lock and shows its code
        os.kill(proc.pid, signal.SIGSTOP)  # frozen: its lock and login marker expire
        newer = _auth(server, url, interactive=True, prompt=Approver(server), lock_timeout=20)
        newer.login()  # takes the expired lock and logs in
        server.approve(code.read_text())  # the frozen login is approved too ...
    finally:
        os.kill(proc.pid, signal.SIGCONT)  # ... and wakes up with a session of its own
    proc.join(JOIN)
    assert proc.exitcode == 0
    stored = _auth(server, url).cached_token()
    assert stored is not None
    assert _sha256(stored.access_token) == _sha256(newer.get_token()) != result.read_text()
    assert server.stats()["device_authorization"] == 2


def test_redis_restarted_empty_under_4_processes(
    server: OidcServer, redis_srv: redis_server.RedisServer, redis_url: str, tmp_path: Path, marks: Path
) -> None:
    url = redis_url + "?socket_timeout=2&lock_ttl=2"
    first = _auth(server, url, interactive=True, prompt=Approver(server)).get_token()
    prompt = redis_workers.Approve(server.base_url, str(marks))
    auth = _auth(server, url, interactive=True, prompt=prompt)
    stop = tmp_path / "stop"
    with SPAWN.Pool(4, initializer=redis_workers.own_home, initargs=(str(tmp_path / "homes"),)) as pool:
        pool.map(redis_workers.ready, range(4))
        server.reset_stats()
        args = (auth, server.api_url(), time.time() + 60, 0.05, 5000, str(stop))
        running = pool.starmap_async(redis_workers.call_api_until, [args] * 4)
        time.sleep(ACCESS_TTL / 2)
        redis_srv.stop()  # down for longer than a token stays fresh: due processes get typed errors
        time.sleep(ACCESS_TTL)
        redis_srv.start()  # back, empty
        deadline = time.monotonic() + 30
        while server.stats()["token"].get("refresh_token", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # a login after the restart, then refreshes again
        time.sleep(ACCESS_TTL / 2)
        stop.touch()
        results = running.get(JOIN)
    total = _merge(results)
    stats = server.stats()
    assert total["errors"], "Redis was down while tokens fell due: some calls must have failed"
    assert all(error.startswith("CacheError: ") for error in total["errors"]), total["errors"][:5]
    assert not any(redis_srv.password in error for error in total["errors"])
    assert stats["device_authorization"] == 1 and len(list(marks.iterdir())) == 1  # one clean re-login
    assert stats["token_errors"].get("invalid_grant", 0) == 0
    assert stats["token"].get("refresh_token", 0) >= 2
    assert len(total["tokens"] - {_sha256(first)}) >= 3  # the re-login's token and refreshed ones reached the API


def test_a_write_lost_to_redis_keeps_the_rotated_session(
    server: OidcServer, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deviceauth._redisstore import RedisStore, _RedisTransaction

    auth = _auth(server, redis_url, interactive=True, prompt=Approver(server))
    first = auth.get_token()
    real_put = _RedisTransaction.put
    failures = iter([True])

    def flaky_put(self: _RedisTransaction, *args: Any, **kwargs: Any) -> None:
        if next(failures, False):
            raise CacheError("Redis went away mid-write", path="redis://test")
        real_put(self, *args, **kwargs)

    monkeypatch.setattr(_RedisTransaction, "put", flaky_put)
    second = auth.renew(first)  # refreshed at the server (rotating the refresh token); the write failed
    assert second != first
    stored = RedisStore(redis_url).read(Identity(auth.issuer, auth.client_id, auth.scope))
    assert stored is not None and stored.access_token == first  # the store missed it ...
    third = auth.renew(second)  # ... so the next slow path writes it, then refreshes with its refresh token
    stored = RedisStore(redis_url).read(Identity(auth.issuer, auth.client_id, auth.scope))
    assert stored is not None and stored.access_token == third
    assert server.stats()["token_errors"].get("invalid_grant", 0) == 0
    assert server.stats()["device_authorization"] == 1
