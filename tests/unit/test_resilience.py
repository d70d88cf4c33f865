"""Failures that must not lose a session: a store that cannot write, a refresh that fails for a moment."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import requests
from deviceauth_fakes import (
    CLIENT_ID,
    ISSUER,
    NON_INTERACTIVE,
    FakeAuthServer,
    FakeClock,
    cached_token,
    make_engine,
    make_token,
    metadata,
    oauth_error,
    write_cache,
)

from deviceauth import ServerError

ME = (ISSUER, CLIENT_ID, None)


@pytest.fixture(autouse=True)
def _no_offline_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVICEAUTH_OFFLINE_TOKEN", raising=False)


def refreshes(server: FakeAuthServer) -> list[str]:
    return [form["refresh_token"] for form in server.token_requests if form.get("grant_type") == "refresh_token"]


class DiskFull:
    """Makes every cache write fail with ENOSPC while ``full`` is set (the rename, after the temp file)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = True
        self.refused = 0
        real_replace = os.replace

        def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
            if self.full and str(dst).endswith(".tokens.json"):
                self.refused += 1
                raise OSError(errno.ENOSPC, "No space left on device")
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)


def test_a_refresh_whose_write_fails_keeps_the_rotated_tokens_and_never_resends_the_consumed_one(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = make_token(clock(), obtained_ago=1000)
    write_cache(cache_path, {ME: original}, server_metadata=metadata())
    engine = make_engine(cache_path, clock)
    disk = DiskFull(monkeypatch)

    first = server.grant(expires_in=300)
    assert engine.access_token(NON_INTERACTIVE) == first["access_token"]  # served from memory
    assert disk.refused == 1
    assert cached_token(cache_path) == original  # the store still holds the consumed refresh token

    clock.advance(1000)  # due again, the disk still full
    second = server.grant(expires_in=300)
    assert engine.access_token(NON_INTERACTIVE) == second["access_token"]
    # Never the consumed refresh token a second time: each refresh used the newest one, from memory.
    assert refreshes(server) == [original.refresh_token, first["refresh_token"]]
    assert engine.cached_token() is not None
    assert engine.cached_token().refresh_token == second["refresh_token"]  # type: ignore[union-attr]

    disk.full = False  # space again: the next slow-path visit writes what memory holds
    clock.advance(1000)
    third = server.grant(expires_in=300)
    assert engine.access_token(NON_INTERACTIVE) == third["access_token"]
    assert refreshes(server)[-1] == second["refresh_token"]
    stored = cached_token(cache_path)
    assert stored is not None
    assert stored.refresh_token == third["refresh_token"]


def test_an_unsaved_session_yields_to_a_newer_one_written_by_another_process(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = make_token(clock(), obtained_ago=1000)
    write_cache(cache_path, {ME: original}, server_metadata=metadata())
    engine = make_engine(cache_path, clock)
    disk = DiskFull(monkeypatch)
    server.grant(expires_in=300)
    engine.access_token(NON_INTERACTIVE)
    disk.full = False
    theirs = make_token(clock(), lifetime=3600)  # another process logged in meanwhile
    write_cache(cache_path, {ME: theirs})
    clock.advance(1000)
    assert engine.access_token(NON_INTERACTIVE) == theirs.access_token
    assert len(refreshes(server)) == 1


def test_transient_refresh_failure_with_a_valid_access_token_serves_it_and_retries_later(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    current = make_token(clock(), lifetime=300, obtained_ago=280)  # due (leeway), still valid for 20 s
    write_cache(cache_path, {ME: current}, server_metadata=metadata())
    engine = make_engine(cache_path, clock)
    server.token_answers.append(oauth_error("server_error", status=503))
    assert engine.access_token(NON_INTERACTIVE) == current.access_token
    assert len(refreshes(server)) == 1
    # Within the backoff: no new attempt, the same token from memory.
    assert engine.access_token(NON_INTERACTIVE) == current.access_token
    assert len(refreshes(server)) == 1
    clock.advance(1.5)
    server.token_answers.append(requests.ConnectionError("reset"))
    assert engine.access_token(NON_INTERACTIVE) == current.access_token
    assert len(refreshes(server)) == 2
    clock.advance(2.5)  # the backoff doubled
    fresh = server.grant()
    assert engine.access_token(NON_INTERACTIVE) == fresh["access_token"]
    assert refreshes(server) == [current.refresh_token] * 3  # nothing was rotated by the failures


def test_transient_refresh_failure_after_expiry_is_an_error(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    expired = make_token(clock(), lifetime=300, obtained_ago=400)
    write_cache(cache_path, {ME: expired}, server_metadata=metadata())
    server.token_answers.append(oauth_error("server_error", status=503))
    with pytest.raises(ServerError) as caught:
        make_engine(cache_path, clock).access_token(NON_INTERACTIVE)
    assert caught.value.transient


def test_a_rejected_token_is_not_served_again_after_a_transient_failure(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    current = make_token(clock(), lifetime=300)
    write_cache(cache_path, {ME: current}, server_metadata=metadata())
    engine = make_engine(cache_path, clock)
    assert engine.access_token(NON_INTERACTIVE) == current.access_token
    server.token_answers.append(oauth_error("server_error", status=503))
    with pytest.raises(ServerError):
        engine.replace_rejected(current.access_token, NON_INTERACTIVE)


def test_a_device_code_the_server_says_lives_for_ever_is_cut_to_max_code_life(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    from deviceauth_fakes import make_auth

    from deviceauth import DeviceCodeExpired

    server.device(interval=5, expires_in=1e12)
    server.token_answers.extend([oauth_error("authorization_pending")] * 200)
    auth = make_auth(cache_path, clock, interactive=True, prompt=lambda code: None, max_code_life=300)
    started = clock()
    with pytest.raises(DeviceCodeExpired):
        auth.get_token()
    assert clock() - started <= 300
    assert 50 <= len(server.token_requests) <= 61  # every 5 s for 300 s, never faster


def test_a_store_that_fails_while_the_token_in_memory_is_valid_serves_it_meanwhile(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deviceauth import CacheError
    from deviceauth.store import FileStore

    current = make_token(clock(), lifetime=300)
    write_cache(cache_path, {ME: current}, server_metadata=metadata())
    engine = make_engine(cache_path, clock)
    assert engine.access_token(NON_INTERACTIVE) == current.access_token
    clock.advance(280)  # due (leeway), valid for 20 s more

    def down(*args: object, **kwargs: object) -> None:
        raise CacheError("the store is down", path=str(cache_path))

    monkeypatch.setattr(FileStore, "read", down)
    assert engine.access_token(NON_INTERACTIVE) == current.access_token
    clock.advance(25)  # now expired, the store still down: the error reaches the caller
    with pytest.raises(CacheError):
        engine.access_token(NON_INTERACTIVE)
    assert server.token_requests == []
