"""``TokenCache``: private atomic writes, corrupt files set aside, bounded lock waits, login markers."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import filelock
import pytest

from deviceauth import CacheError, LockTimeout, _cache
from deviceauth._cache import LoginInProgress, TokenCache, default_cache_path


@pytest.fixture(autouse=True)
def _short_lock_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cache polls the lock, backing off; short waits keep the lock tests fast.
    monkeypatch.setattr(_cache, "_LONGEST_WAIT", 0.05)
    monkeypatch.setattr(_cache, "_LOGIN_CHECK_EVERY", 0.05)


@pytest.fixture
def cache(cache_path: Path) -> TokenCache:
    return TokenCache(cache_path, lock_timeout=0.2)


@pytest.fixture
def held_lock(cache: TokenCache) -> Iterator[filelock.FileLock]:
    cache.path.parent.mkdir(parents=True, exist_ok=True)
    other = filelock.FileLock(cache.lock_path, thread_local=False)
    other.acquire()
    try:
        yield other
    finally:
        other.release()


def save(cache: TokenCache, key: str, value: object) -> None:
    with cache.locked() as locked:
        locked.data["identities"][key] = value
        locked.save()


def write_marker(cache: TokenCache, *, pid: int, expires_in: float, host: str | None = None) -> None:
    cache.login_marker_path.write_text(
        json.dumps(
            {
                "pid": pid,
                "host": host or socket.gethostname(),
                "started_at": time.time(),
                "expires_at": time.time() + expires_in,
            }
        )
    )


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


# -- reading and writing ----------------------------------------------------------------------


def test_missing_file_reads_as_empty(cache: TokenCache) -> None:
    assert cache.read() == {"version": 1, "identities": {}, "servers": {}}
    assert not cache.path.exists()


def test_write_creates_a_private_file_in_a_private_directory(cache: TokenCache) -> None:
    save(cache, "a", {"x": 1})
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(cache.lock_path.stat().st_mode) & 0o077 == 0
    assert cache.read()["identities"] == {"a": {"x": 1}}


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    cache = TokenCache(tmp_path / ".tokens.json")
    save(cache, "a", 1)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600


def test_rewriting_an_existing_file_keeps_it_private(cache: TokenCache) -> None:
    cache.path.parent.mkdir(parents=True)
    cache.path.write_text(json.dumps({"version": 1, "identities": {}}))
    cache.path.chmod(0o644)
    save(cache, "a", 1)
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600


def test_atomic_write_leaves_no_temp_files(cache: TokenCache) -> None:
    for i in range(3):
        save(cache, f"id{i}", i)
    assert sorted(p.name for p in cache.path.parent.iterdir()) == [".tokens.json", ".tokens.json.lock"]
    assert cache.read()["identities"] == {"id0": 0, "id1": 1, "id2": 2}


def test_write_replaces_the_file_rather_than_truncating_it(cache: TokenCache) -> None:
    save(cache, "a", 1)
    before = cache.path.stat().st_ino
    save(cache, "b", 2)
    assert cache.path.stat().st_ino != before


def test_stray_temp_files_from_a_crash_are_removed_on_the_next_write(cache: TokenCache) -> None:
    cache.path.parent.mkdir(parents=True)
    stray = cache.path.parent / ".tokens.json.k2j4h3.tmp"
    stray.write_text('{"half": ')
    unrelated = cache.path.parent / "notes.tmp"
    unrelated.write_text("keep me")
    save(cache, "a", 1)
    assert not stray.exists()
    assert unrelated.read_text() == "keep me"


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
    cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    save(cache, "a", 1)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    with cache.locked() as locked:
        locked.data["identities"]["b"] = 2
        monkeypatch.setattr(os, "replace", broken_replace)
        with pytest.raises(CacheError, match="No space left"):
            locked.save()
        monkeypatch.undo()
    assert cache.read()["identities"] == {"a": 1}
    assert not list(cache.path.parent.glob("*.tmp"))


def test_every_identity_survives_writes_by_different_writers(cache_path: Path) -> None:
    save(TokenCache(cache_path), "alice", 1)
    save(TokenCache(cache_path), "bob", 2)
    assert TokenCache(cache_path).read()["identities"] == {"alice": 1, "bob": 2}


@pytest.mark.parametrize("content", [b'{"identities": {"a": ', b"\xff\xfe garbage", b"[1, 2]", b'{"identities": []}'])
def test_corrupt_file_is_set_aside_and_reported(
    cache: TokenCache, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    cache.path.parent.mkdir(parents=True)
    cache.path.write_bytes(content)
    assert cache.read()["identities"] == {}  # lock-free readers just see nothing
    assert cache.path.read_bytes() == content  # ... and do not touch the file
    with caplog.at_level(logging.WARNING, logger="deviceauth"), cache.locked() as locked:
        assert locked.data["identities"] == {}
        locked.data["identities"]["a"] = 1
        locked.save()
    aside = list(cache.path.parent.glob(".tokens.json.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == content
    assert str(aside[0]) in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    assert cache.read()["identities"] == {"a": 1}


def test_two_corrupt_files_in_the_same_second_are_both_kept(cache: TokenCache, monkeypatch: pytest.MonkeyPatch) -> None:
    frozen = types.SimpleNamespace(
        time=lambda: 1_800_000_000.25, monotonic=time.monotonic, monotonic_ns=time.monotonic_ns, strftime=time.strftime
    )
    monkeypatch.setattr(_cache, "time", frozen)
    cache.path.parent.mkdir(parents=True)
    for content in (b"{first", b"{second"):
        cache.path.write_bytes(content)
        with cache.locked():
            pass
    kept = sorted(p.read_bytes() for p in cache.path.parent.glob(".tokens.json.corrupt-*"))
    assert kept == [b"{first", b"{second"]


def test_newer_format_version_is_refused_not_overwritten(cache: TokenCache) -> None:
    cache.path.parent.mkdir(parents=True)
    content = json.dumps({"version": 99, "identities": {"x": {}}}).encode()
    cache.path.write_bytes(content)
    with pytest.raises(CacheError, match="version"):
        cache.read()
    with pytest.raises(CacheError, match="version"), cache.locked():
        pass
    assert cache.path.read_bytes() == content
    probe = filelock.FileLock(cache.lock_path)  # the lock was released after the error
    probe.acquire(timeout=0.5)
    probe.release()


@pytest.mark.parametrize("servers", [[], None, "x"])
def test_a_cache_whose_servers_is_not_an_object_is_treated_as_corrupt(cache: TokenCache, servers: object) -> None:
    cache.path.parent.mkdir(parents=True)
    cache.path.write_text(json.dumps({"version": 1, "identities": {}, "servers": servers}))
    assert isinstance(cache.read()["servers"], dict)
    with cache.locked() as locked:
        assert isinstance(locked.data["servers"], dict)


def test_a_path_that_cannot_be_read_is_a_cache_error(cache: TokenCache) -> None:
    cache.path.mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(CacheError) as caught:
        cache.read()
    assert str(cache.path) in str(caught.value)
    with pytest.raises(CacheError), cache.locked():
        pass


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads mode 000 files")
def test_unreadable_file_is_a_cache_error(cache: TokenCache) -> None:
    save(cache, "a", 1)
    cache.path.chmod(0)
    try:
        with pytest.raises(CacheError, match="cannot read"):
            cache.read()
    finally:
        cache.path.chmod(0o600)


def test_uncreatable_directory_is_a_cache_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    cache = TokenCache(tmp_path / "file" / "sub" / ".tokens.json")
    with pytest.raises(CacheError, match="cache directory"), cache.locked():
        pass


def test_default_cache_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DEVICEAUTH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "deviceauth" / ".tokens.json"
    monkeypatch.setenv("DEVICEAUTH_CACHE", str(tmp_path / "explicit.json"))
    assert default_cache_path() == tmp_path / "explicit.json"
    assert TokenCache().path == tmp_path / "explicit.json"


# -- the lock -------------------------------------------------------------------------------------


def test_lock_timeout_names_the_lock_file(cache: TokenCache, held_lock: filelock.FileLock) -> None:
    started = time.monotonic()
    with pytest.raises(LockTimeout) as caught, cache.locked():
        pytest.fail("got the lock another holder has")
    assert time.monotonic() - started < 3
    assert caught.value.lock_file == str(cache.lock_path)
    assert str(cache.lock_path) in str(caught.value)
    assert isinstance(caught.value, TimeoutError)


def test_lock_held_by_another_process(cache: TokenCache) -> None:
    cache.path.parent.mkdir(parents=True)
    script = (
        "import filelock, sys, time\n"
        f"lock = filelock.FileLock({str(cache.lock_path)!r}); lock.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(LockTimeout), cache.locked():
                pass
        finally:
            holder.kill()
            holder.wait(timeout=30)
    # The kernel released the dead holder's lock.
    with cache.locked() as locked:
        assert locked.data["identities"] == {}
    assert cache.lock_path.exists()  # the lock file is never deleted


def test_lock_is_released_after_the_block_and_on_errors(cache: TokenCache) -> None:
    with pytest.raises(RuntimeError), cache.locked():
        raise RuntimeError("boom")
    probe = filelock.FileLock(cache.lock_path)
    probe.acquire(timeout=0.5)
    probe.release()


def test_waiters_wait_longer_than_lock_timeout_while_a_login_is_in_progress(
    cache: TokenCache, held_lock: filelock.FileLock
) -> None:
    write_marker(cache, pid=os.getpid(), expires_in=20)
    told: list[LoginInProgress] = []
    release = threading.Timer(0.8, held_lock.release)
    release.start()
    started = time.monotonic()
    try:
        with cache.locked(on_wait=told.append) as locked:
            waited = time.monotonic() - started
            assert locked.data["identities"] == {}
    finally:
        release.cancel()
        release.join(timeout=5)
    held_lock.acquire()  # the fixture releases it again
    assert waited >= 0.7 > cache.lock_timeout
    assert len(told) == 1
    assert told[0].pid == os.getpid()
    assert told[0].host == socket.gethostname()


def test_login_wait_ends_when_the_code_expires(cache: TokenCache, held_lock: filelock.FileLock) -> None:
    write_marker(cache, pid=os.getpid(), expires_in=0.6)
    started = time.monotonic()
    with pytest.raises(LockTimeout), cache.locked():
        pass
    assert 0.5 <= time.monotonic() - started < 5


@pytest.mark.parametrize("case", ["dead pid", "expired", "garbage"])
def test_a_stale_login_marker_does_not_extend_the_wait(
    cache: TokenCache, held_lock: filelock.FileLock, case: str
) -> None:
    if case == "dead pid":
        write_marker(cache, pid=dead_pid(), expires_in=60)
    elif case == "expired":
        write_marker(cache, pid=os.getpid(), expires_in=-1)
    else:
        cache.login_marker_path.write_text("{not json")
    told: list[LoginInProgress] = []
    started = time.monotonic()
    with pytest.raises(LockTimeout), cache.locked(on_wait=told.append):
        pass
    assert time.monotonic() - started < 2
    assert told == []


def test_a_login_marker_from_another_host_counts_as_alive() -> None:
    marker = LoginInProgress(pid=1, host="elsewhere.invalid", started_at=0, expires_at=time.time() + 60)
    assert marker.alive(time.time())
    assert not marker.alive(time.time() + 61)


def test_login_marker_is_written_while_held_and_removed_after(cache: TokenCache) -> None:
    expires_at = time.time() + 300
    with cache.locked() as locked:
        with locked.login_marker(expires_at):
            marker = cache.login_in_progress()
            assert marker is not None
            assert marker.pid == os.getpid()
            assert marker.expires_at == expires_at
        assert not cache.login_marker_path.exists()
        with pytest.raises(KeyboardInterrupt), locked.login_marker(expires_at):
            raise KeyboardInterrupt
        assert cache.login_in_progress() is None


def test_waiter_stops_waiting_when_told_the_lock_is_no_longer_needed(cache: TokenCache) -> None:
    cache.path.parent.mkdir(parents=True)
    holder = filelock.FileLock(cache.lock_path)
    holder.acquire()
    asked: list[float] = []

    def stop_waiting() -> bool:
        asked.append(time.monotonic())
        return len(asked) >= 3  # the third look finds what it needs

    started = time.monotonic()
    try:
        with cache.locked(stop_waiting=stop_waiting) as locked:
            assert locked is None  # gave up the wait instead of queueing for the lock
    finally:
        holder.release()
    assert len(asked) == 3
    assert time.monotonic() - started < 0.1  # the first looks come within milliseconds


def test_stamp_changes_on_every_write(cache: TokenCache) -> None:
    assert cache.stamp() is None
    with cache.locked() as locked:
        assert locked is not None
        locked.save()
    first = cache.stamp()
    with cache.locked() as locked:
        assert locked is not None
        locked.save()
    assert first is not None
    assert cache.stamp() != first
