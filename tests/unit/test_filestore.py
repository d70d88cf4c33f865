"""``FileStore``: private atomic writes, corrupt files set aside, bounded lock waits, login markers, hostile files.

Every test goes through the ``TokenStore`` calls; the raw JSON is read only to check the file
format itself or as the base of a planted hostile file.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import socket
import stat
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import filelock
import pytest
from deviceauth_fakes import CLIENT_ID, ISSUER, cached_token, make_token, metadata, read_cache, write_cache

from deviceauth import CacheError, DeviceAuthError, LockTimeout, _filestore
from deviceauth._filestore import FileStore, default_cache_path
from deviceauth._settings import Identity
from deviceauth._store import LoginInProgress, StaleWrite, TokenStore, Written
from deviceauth._token import Token, valid_token_text

ALICE = Identity(ISSUER, CLIENT_ID, None)
BOB = Identity(ISSUER, "other-client", "openid")


@pytest.fixture(autouse=True)
def _short_lock_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    # The store polls the lock, backing off; short slices keep the lock tests quick.
    monkeypatch.setattr(_filestore, "_LONGEST_WAIT", 0.05)
    monkeypatch.setattr(_filestore, "_LOGIN_CHECK_EVERY", 0.05)


@pytest.fixture
def store(cache_path: Path) -> FileStore:
    return FileStore(cache_path, lock_timeout=0.2)


@pytest.fixture
def held_lock(store: FileStore) -> Iterator[filelock.FileLock]:
    store.path.parent.mkdir(parents=True, exist_ok=True)
    other = filelock.FileLock(store.lock_path, thread_local=False)
    other.acquire()
    try:
        yield other
    finally:
        other.release()


def token(n: int | None = None, **kwargs: Any) -> Token:
    return make_token(time.time(), n=n, **kwargs)


def put(store: FileStore, identity: Identity, new: Token, **kwargs: Any) -> None:
    with store.transaction(identity) as txn:
        assert not isinstance(txn, Written)
        txn.put(new, replacing=txn.token.refresh_token if txn.token else None, **kwargs)


def touch_store(store: FileStore) -> None:
    """A transaction that changes nothing (it still sets a corrupt file aside)."""
    with store.transaction(ALICE) as txn:
        assert not isinstance(txn, Written)


def plant(path: Path, content: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)


def write_marker(store: FileStore, *, pid: int, expires_in: float, host: str | None = None) -> None:
    marker = {"pid": pid, "host": host or socket.gethostname(), "expires_at": time.time() + expires_in}
    plant(store.login_marker_path, json.dumps(marker))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def lock_is_free(store: FileStore) -> bool:
    probe = filelock.FileLock(store.lock_path)
    try:
        probe.acquire(timeout=0.5)
    except filelock.Timeout:
        return False
    probe.release()
    return True


def set_aside(store: FileStore) -> list[Path]:
    return sorted(store.path.parent.glob(store.path.name + ".corrupt-*"))


# -- reading and writing ----------------------------------------------------------------------


def test_a_file_store_is_a_token_store(store: FileStore) -> None:
    assert isinstance(store, TokenStore)
    assert store.location == str(store.path)
    assert store.lock_path == store.path.with_name(".tokens.json.lock")
    assert store.login_marker_path == store.path.with_name(".tokens.json.login")


def test_missing_file_reads_as_nothing_and_is_not_created(store: FileStore) -> None:
    assert store.read(ALICE) is None
    assert store.metadata(ISSUER) is None
    assert list(store.records()) == []
    assert store.version() is None
    assert store.login_in_progress() is None
    assert not store.path.parent.exists()


def test_a_written_token_reads_back_with_its_server_metadata(store: FileStore) -> None:
    first = token()
    put(store, ALICE, first, metadata=metadata())
    assert store.read(ALICE) == first
    assert cached_token(store.path) == first
    assert store.read(BOB) is None
    assert store.metadata(ISSUER) == metadata()
    assert store.metadata("https://elsewhere.example.org") is None
    with store.transaction(ALICE) as txn:
        assert not isinstance(txn, Written)
        assert txn.token == first
        assert txn.metadata == metadata()


def test_the_file_format(store: FileStore) -> None:
    first = token()
    put(store, ALICE, first, metadata=metadata())
    data = read_cache(store.path)
    assert data["version"] == 1
    assert data["identities"] == {
        ALICE.key: {"issuer": ISSUER, "client_id": CLIENT_ID, "scope": None, "token": first.to_json()}
    }
    assert data["servers"] == {ISSUER: {"metadata": metadata()}}


def test_write_creates_a_private_file_in_a_private_directory(store: FileStore) -> None:
    put(store, ALICE, token())
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.lock_path.stat().st_mode) & 0o077 == 0


def test_an_existing_directory_keeps_its_mode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tmp_path.chmod(0o755)
    store = FileStore(tmp_path / ".tokens.json")
    with caplog.at_level(logging.WARNING, logger="deviceauth"):
        put(store, ALICE, token())
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert "writable by other users" not in caplog.text


def test_rewriting_an_existing_file_keeps_it_private(store: FileStore) -> None:
    put(store, ALICE, token())
    store.path.chmod(0o644)
    put(store, ALICE, token())
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_atomic_writes_leave_no_temp_files(store: FileStore) -> None:
    identities = [Identity(ISSUER, f"client-{i}", None) for i in range(3)]
    for identity in identities:
        put(store, identity, token())
    assert sorted(p.name for p in store.path.parent.iterdir()) == [".tokens.json", ".tokens.json.lock"]
    assert {record.identity for record in store.records()} == set(identities)


def test_write_replaces_the_file_rather_than_truncating_it(store: FileStore) -> None:
    first = token()
    put(store, ALICE, first)
    old_link = store.path.with_name("old-inode")
    os.link(store.path, old_link)  # a reader that opened the old file keeps reading all of it
    before = old_link.read_bytes()
    put(store, ALICE, token())
    assert store.path.stat().st_ino != old_link.stat().st_ino
    assert old_link.read_bytes() == before
    assert FileStore(old_link).read(ALICE) == first


def test_stray_temp_files_from_a_crash_are_removed_on_the_next_write(store: FileStore) -> None:
    stray = store.path.parent / ".tokens.json.k2j4h3.tmp"
    plant(stray, '{"half": ')
    unrelated = store.path.parent / "notes.tmp"
    unrelated.write_text("keep me")
    put(store, ALICE, token())
    assert not stray.exists()
    assert unrelated.read_text() == "keep me"


def test_stray_temp_removal_treats_the_cache_name_literally(tmp_path: Path) -> None:
    # A cache named like a glob pattern must not sweep other files' temp files.
    store = FileStore(tmp_path / "tokens[12].json")
    neighbour = tmp_path / "tokens1.json.abc.tmp"
    neighbour.write_text("not ours")
    put(store, ALICE, token())
    assert neighbour.read_text() == "not ours"


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    first = token()
    put(store, ALICE, first)
    real_replace = os.replace

    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    second = token()
    with store.transaction(ALICE) as txn:
        assert not isinstance(txn, Written)
        monkeypatch.setattr(os, "replace", disk_full)
        with pytest.raises(CacheError, match="No space left") as caught:
            txn.put(second, replacing=first.refresh_token)
        assert caught.value.path == str(store.path)
        assert txn.token == first  # the transaction still holds what the file holds
        monkeypatch.setattr(os, "replace", real_replace)
        txn.put(second, replacing=first.refresh_token)  # ... so the write can be retried
    assert store.read(ALICE) == second
    assert not list(store.path.parent.glob("*.tmp"))


def test_a_failed_write_keeps_the_old_file(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    first = token()
    put(store, ALICE, first)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CacheError, match="No space left"):
        put(store, ALICE, token())
    monkeypatch.undo()
    assert store.read(ALICE) == first
    assert not list(store.path.parent.glob("*.tmp"))
    assert lock_is_free(store)


def test_every_identity_survives_writes_by_different_writers(cache_path: Path) -> None:
    alice, bob = token(), token()
    put(FileStore(cache_path), ALICE, alice)
    put(FileStore(cache_path), BOB, bob)
    reader = FileStore(cache_path)
    assert reader.read(ALICE) == alice
    assert reader.read(BOB) == bob
    assert sorted((r.identity.client_id, r.token.access_token) for r in reader.records()) == sorted(
        [(CLIENT_ID, alice.access_token), ("other-client", bob.access_token)]
    )


def test_write_cache_helper_and_store_agree(cache_path: Path) -> None:
    first = token()
    write_cache(cache_path, {(ISSUER, CLIENT_ID, None): first}, server_metadata=metadata())
    assert FileStore(cache_path).read(ALICE) == first
    assert FileStore(cache_path).metadata(ISSUER) == metadata()


def test_put_refuses_when_the_stored_session_changed(store: FileStore) -> None:
    first, second = token(), token()
    put(store, ALICE, first)
    with store.transaction(ALICE) as txn:
        assert not isinstance(txn, Written)
        with pytest.raises(StaleWrite):
            txn.put(second, replacing="rt-someone-else")
        with pytest.raises(StaleWrite):
            txn.put(second, replacing=None)
    assert store.read(ALICE) == first


def test_delete_is_compare_and_delete(store: FileStore) -> None:
    first = token()
    put(store, ALICE, first)
    put(store, BOB, token())
    with store.transaction(ALICE) as txn:
        assert not isinstance(txn, Written)
        assert txn.delete(unless_changed_from="rt-someone-else") is False
        assert txn.token == first
        assert txn.delete(unless_changed_from=first.refresh_token) is True
        assert txn.token is None
        assert txn.delete(unless_changed_from=first.refresh_token) is False
    assert store.read(ALICE) is None
    assert store.read(BOB) is not None


def test_forget_removes_one_identity_and_returns_its_token(store: FileStore) -> None:
    first, other = token(), token()
    put(store, ALICE, first)
    put(store, BOB, other)
    assert store.forget(ALICE) == first
    assert store.forget(ALICE) is None
    assert store.read(ALICE) is None
    assert store.read(BOB) == other


@pytest.mark.parametrize("content", [b'{"identities": {"a": ', b"\xff\xfe garbage", b"[1, 2]", b'{"identities": []}'])
def test_corrupt_file_is_set_aside_and_reported(
    store: FileStore, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    plant(store.path, content)
    assert store.read(ALICE) is None  # lock-free readers just see nothing
    assert list(store.records()) == []
    assert store.path.read_bytes() == content  # ... and do not touch the file
    first = token()
    with caplog.at_level(logging.WARNING, logger="deviceauth"), store.transaction(ALICE) as txn:
        assert not isinstance(txn, Written)
        assert txn.token is None
        txn.put(first, replacing=None)
    aside = set_aside(store)
    assert len(aside) == 1
    assert aside[0].read_bytes() == content
    assert str(aside[0]) in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    assert store.read(ALICE) == first


def test_two_corrupt_files_in_the_same_second_are_both_kept(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    frozen = types.SimpleNamespace(
        time=lambda: 1_800_000_000.25, monotonic=time.monotonic, monotonic_ns=time.monotonic_ns, strftime=time.strftime
    )
    monkeypatch.setattr(_filestore, "time", frozen)
    for content in (b"{first", b"{second"):
        plant(store.path, content)
        touch_store(store)
    assert sorted(p.read_bytes() for p in set_aside(store)) == [b"{first", b"{second"]


def test_newer_format_version_is_refused_not_overwritten(store: FileStore) -> None:
    content = json.dumps({"version": 99, "identities": {"x": {}}}).encode()
    plant(store.path, content)
    with pytest.raises(CacheError, match="version"):
        store.read(ALICE)
    with pytest.raises(CacheError, match="version"):
        put(store, ALICE, token())
    assert store.path.read_bytes() == content
    assert set_aside(store) == []
    assert lock_is_free(store)  # the lock was released after the error


@pytest.mark.parametrize("servers", [[], None, "x"])
def test_a_cache_whose_servers_is_not_an_object_is_treated_as_corrupt(store: FileStore, servers: object) -> None:
    plant(store.path, json.dumps({"version": 1, "identities": {}, "servers": servers}))
    assert store.metadata(ISSUER) is None
    put(store, ALICE, token(), metadata=metadata())
    assert store.metadata(ISSUER) == metadata()
    assert len(set_aside(store)) == 1


def test_a_directory_in_place_of_the_cache_is_a_cache_error(store: FileStore) -> None:
    store.path.mkdir(parents=True)
    with pytest.raises(CacheError) as caught:
        store.read(ALICE)
    assert str(store.path) in str(caught.value)
    assert caught.value.path == str(store.path)
    with pytest.raises(CacheError):
        put(store, ALICE, token())
    assert store.path.is_dir()
    assert lock_is_free(store)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads mode 000 files")
def test_unreadable_file_is_a_cache_error(store: FileStore) -> None:
    put(store, ALICE, token())
    store.path.chmod(0)
    try:
        with pytest.raises(CacheError, match="cannot read"):
            store.read(ALICE)
    finally:
        store.path.chmod(0o600)


def test_uncreatable_directory_is_a_cache_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    store = FileStore(tmp_path / "file" / "sub" / ".tokens.json")
    with pytest.raises(CacheError, match="cache directory"):
        put(store, ALICE, token())


def test_default_cache_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DEVICEAUTH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "deviceauth" / ".tokens.json"
    assert FileStore().path == tmp_path / "xdg" / "deviceauth" / ".tokens.json"
    monkeypatch.setenv("DEVICEAUTH_CACHE", str(tmp_path / "explicit.json"))
    assert default_cache_path() == tmp_path / "explicit.json"
    assert FileStore().path == tmp_path / "explicit.json"


def test_a_relative_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = FileStore("sub/.tokens.json")
    assert store.path == tmp_path / "sub" / ".tokens.json"
    monkeypatch.chdir("/")
    put(store, ALICE, token())
    assert (tmp_path / "sub" / ".tokens.json").is_file()


@pytest.mark.parametrize("lock_timeout", [float("nan"), float("inf"), -1, "5", True])
def test_an_unusable_lock_timeout_is_refused_at_construction(cache_path: Path, lock_timeout: Any) -> None:
    with pytest.raises(ValueError, match="lock_timeout"):
        FileStore(cache_path, lock_timeout=lock_timeout)


def test_a_cache_path_with_a_nul_is_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NUL"):
        FileStore(str(tmp_path / "a\0b.json"))


def test_version_changes_on_every_write(store: FileStore) -> None:
    assert store.version() is None
    put(store, ALICE, token())
    first = store.version()
    assert first is not None
    assert store.version() == first  # reading does not change it
    put(store, ALICE, token(n=1))
    second = store.version()
    put(store, ALICE, token(n=2))  # same size as the write before
    assert len({first, second, store.version()}) == 3


# -- the lock -------------------------------------------------------------------------------------


def test_lock_timeout_names_the_lock_file(store: FileStore, held_lock: filelock.FileLock) -> None:
    with pytest.raises(LockTimeout) as caught, store.transaction(ALICE):
        pytest.fail("got the lock another holder has")
    assert caught.value.lock_file == str(store.lock_path)
    assert str(store.lock_path) in str(caught.value)
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value, DeviceAuthError)


def test_lock_held_by_another_process(store: FileStore) -> None:
    store.path.parent.mkdir(parents=True)
    script = (
        "import filelock, sys, time\n"
        f"lock = filelock.FileLock({str(store.lock_path)!r}); lock.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(LockTimeout):
                put(store, ALICE, token())
        finally:
            holder.kill()
            holder.wait(timeout=30)
    first = token()
    put(store, ALICE, first)  # the kernel released the dead holder's lock
    assert store.read(ALICE) == first
    assert store.lock_path.exists()  # the lock file is never deleted


def test_lock_is_released_after_the_block_and_on_errors(store: FileStore) -> None:
    with pytest.raises(RuntimeError), store.transaction(ALICE):
        raise RuntimeError("boom")
    assert lock_is_free(store)
    touch_store(store)
    assert lock_is_free(store)


def test_waiters_wait_longer_than_lock_timeout_while_a_login_is_in_progress(
    store: FileStore, held_lock: filelock.FileLock
) -> None:
    write_marker(store, pid=os.getpid(), expires_in=20)
    told: list[LoginInProgress] = []
    release = threading.Timer(0.8, held_lock.release)
    release.start()
    started = time.monotonic()
    try:
        with store.transaction(ALICE, on_wait=told.append) as txn:
            waited = time.monotonic() - started
            assert not isinstance(txn, Written)
            assert txn.token is None
    finally:
        release.cancel()
        release.join(timeout=5)
    held_lock.acquire()  # the fixture releases it again
    assert waited >= 0.7 > store.lock_timeout  # it did not give up at lock_timeout
    assert len(told) == 1
    assert told[0].pid == os.getpid()
    assert told[0].host == socket.gethostname()


def test_the_login_wait_ends_when_the_code_expires(store: FileStore, held_lock: filelock.FileLock) -> None:
    write_marker(store, pid=os.getpid(), expires_in=1.0)
    started = time.monotonic()
    with pytest.raises(LockTimeout), store.transaction(ALICE):
        pass
    waited = time.monotonic() - started
    assert waited >= 0.8  # extended past lock_timeout by the live login ...
    assert waited < 30  # ... but not for ever: the holder never lets go in this test


@pytest.mark.parametrize("case", ["dead pid", "expired", "garbage", "pid 0", "negative pid", "huge pid", "nan"])
def test_a_stale_login_marker_does_not_extend_the_wait(
    store: FileStore, held_lock: filelock.FileLock, case: str
) -> None:
    if case == "dead pid":
        write_marker(store, pid=dead_pid(), expires_in=60)
    elif case == "expired":
        write_marker(store, pid=os.getpid(), expires_in=-1)
    elif case == "garbage":
        plant(store.login_marker_path, "{not json")
    elif case == "nan":
        plant(store.login_marker_path, f'{{"pid": {os.getpid()}, "host": "{socket.gethostname()}", "expires_at": NaN}}')
    else:
        # os.kill(0 or -1, 0) "succeeds" (it signals a group), and a huge pid overflows it.
        write_marker(store, pid={"pid 0": 0, "negative pid": -1, "huge pid": 10**30}[case], expires_in=60)
    told: list[LoginInProgress] = []
    started = time.monotonic()
    with pytest.raises(LockTimeout), store.transaction(ALICE, on_wait=told.append):
        pass
    assert time.monotonic() - started < 30  # the marker claims 60 s
    assert told == []


def test_a_login_marker_from_another_host_counts_as_alive(store: FileStore) -> None:
    write_marker(store, pid=dead_pid(), expires_in=60, host="elsewhere.invalid")
    marker = store.login_in_progress()
    assert marker is not None
    assert marker.host == "elsewhere.invalid"
    assert marker.alive(time.time())  # its pid means nothing here: trust the expiry
    assert not marker.alive(time.time() + 61)


def test_login_marker_is_written_while_held_and_removed_after(store: FileStore) -> None:
    expires_at = time.time() + 300
    with store.transaction(ALICE) as txn:
        assert not isinstance(txn, Written)
        with txn.login_marker(expires_at):
            marker = store.login_in_progress()
            assert marker is not None
            assert marker.pid == os.getpid()
            assert marker.host == socket.gethostname()
            assert marker.expires_at == expires_at
            assert stat.S_IMODE(store.login_marker_path.stat().st_mode) & 0o077 == 0
        assert not store.login_marker_path.exists()
        with pytest.raises(KeyboardInterrupt), txn.login_marker(expires_at):
            raise KeyboardInterrupt
        assert store.login_in_progress() is None
        txn.keep_alive()  # flock needs no keeping alive; the call is harmless
    assert sorted(p.name for p in store.path.parent.iterdir()) == [".tokens.json.lock"]


def test_a_waiter_is_handed_a_usable_token_the_holder_wrote(store: FileStore) -> None:
    old, new = token(), token()
    put(store, ALICE, old)
    since = store.version()
    wrote, done = threading.Event(), threading.Event()

    def holder() -> None:
        with store.transaction(ALICE) as txn:
            assert not isinstance(txn, Written)
            txn.put(new, replacing=old.refresh_token)
            wrote.set()
            done.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert wrote.wait(30)
        with store.transaction(ALICE, since=since, usable=lambda t: t.access_token == new.access_token) as got:
            assert got == Written(new)  # without the lock, which the holder still has
            assert not done.is_set()
    finally:
        done.set()
        thread.join(timeout=30)


@pytest.mark.parametrize("case", ["unusable", "already seen", "another identity"])
def test_a_waiter_keeps_waiting_for_a_token_it_cannot_use(store: FileStore, case: str) -> None:
    old, new = token(), token()
    put(store, ALICE, old)
    since = store.version()
    wrote, done = threading.Event(), threading.Event()

    def holder() -> None:
        with store.transaction(BOB if case == "another identity" else ALICE) as txn:
            assert not isinstance(txn, Written)
            txn.put(new, replacing=old.refresh_token if case != "another identity" else None)
            wrote.set()
            done.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert wrote.wait(30)
        if case == "already seen":
            since = store.version()  # the waiter read the holder's write itself, and did not want it
        usable: Callable[[Token], bool] = (lambda t: False) if case == "unusable" else (lambda t: t == new)
        with pytest.raises(LockTimeout), store.transaction(ALICE, since=since, usable=usable):
            pass
    finally:
        done.set()
        thread.join(timeout=30)


# -- hostile files (issue 7) --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["directory", "symlink loop", "symlink to a file", "dangling symlink", "fifo"])
def test_a_lock_path_that_is_not_a_regular_file_is_a_cache_error(store: FileStore, tmp_path: Path, kind: str) -> None:
    first = token()
    put(store, ALICE, first)
    store.lock_path.unlink()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    if kind == "directory":
        store.lock_path.mkdir()
    elif kind == "symlink loop":
        store.lock_path.symlink_to(store.lock_path)
    elif kind == "symlink to a file":
        store.lock_path.symlink_to(victim)
    elif kind == "dangling symlink":
        store.lock_path.symlink_to(tmp_path / "nowhere")
    else:
        os.mkfifo(store.lock_path)
    with pytest.raises(CacheError) as caught:
        put(store, ALICE, token())
    assert type(caught.value) is CacheError  # typed, not a raw OSError
    assert str(store.lock_path) in str(caught.value)
    assert victim.read_text() == "precious"
    assert not (tmp_path / "nowhere").exists()
    assert store.read(ALICE) == first  # lock-free reads still work


_READ_ONLY_CHILD = """
import json, sys, time
from deviceauth import CacheError
from deviceauth._filestore import FileStore
from deviceauth._settings import Identity
from deviceauth._token import Token

store = FileStore(sys.argv[1], lock_timeout=2.0)
identity = Identity(*json.loads(sys.argv[2]))
found = store.read(identity)
new = Token(access_token="at-new-token", expires_at=time.time() + 300, obtained_at=time.time())
try:
    with store.transaction(identity) as txn:
        txn.put(new, replacing=txn.token.refresh_token if txn.token else None)
    outcome = "written"
except CacheError as exc:
    outcome = "CacheError: " + str(exc)
except BaseException as exc:
    outcome = "raw " + type(exc).__name__ + ": " + str(exc)
print(json.dumps({"read": found.access_token if found else None, "write": outcome}))
"""


def _can_remount_read_only(directory: Path) -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or sys.platform != "linux":
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$1" "$1"', "sh", str(directory)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


def run_on_read_only_directory(directory: Path, *args: str) -> dict[str, Any]:
    """Run ``_READ_ONLY_CHILD`` with ``directory`` read-only: a read-only bind mount for root, else chmod."""
    command = [sys.executable, "-c", _READ_ONLY_CHILD, *args]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        if not _can_remount_read_only(directory):
            pytest.skip("running as root, where chmod cannot make a directory read-only, and cannot mount here")
        remount = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" && shift && exec "$@"'
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", remount, "sh", str(directory)]
        command += [sys.executable, "-c", _READ_ONLY_CHILD, *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    else:
        directory.chmod(0o555)
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        finally:
            directory.chmod(0o700)
    assert result.returncode == 0, result.stderr
    outcome: dict[str, Any] = json.loads(result.stdout)
    return outcome


@pytest.mark.parametrize("case", ["existing cache", "empty directory", "linked cache", "linked corrupt cache"])
def test_a_read_only_directory_makes_writes_a_cache_error(store: FileStore, tmp_path: Path, case: str) -> None:
    first = token()
    read_only = store.path.parent
    if case == "empty directory":
        read_only.mkdir(parents=True)
    elif case == "existing cache":
        put(store, ALICE, first)
    else:
        # The lock beside the link stays writable: the write itself (or the set-aside) fails.
        read_only = tmp_path / "mounted"
        put(FileStore(read_only / "tokens.json"), ALICE, first)
        if case == "linked corrupt cache":
            (read_only / "tokens.json").write_text("{corrupt")
        store.path.parent.mkdir(parents=True)
        store.path.symlink_to(read_only / "tokens.json")
    before = sorted(p.name for p in read_only.iterdir())
    outcome = run_on_read_only_directory(read_only, str(store.path), json.dumps(list(vars_of(ALICE))))
    expected = {
        "existing cache": ("cannot take the lock", first),
        "empty directory": ("cannot take the lock", None),
        "linked cache": ("cannot write the token cache", first),
        "linked corrupt cache": ("cannot be moved aside", None),
    }[case]
    assert outcome["write"].startswith("CacheError: "), outcome["write"]
    assert expected[0] in outcome["write"]
    assert "Read-only file system" in outcome["write"] or "ermission denied" in outcome["write"]
    assert outcome["read"] == (expected[1].access_token if expected[1] else None)  # reading still works
    assert sorted(p.name for p in read_only.iterdir()) == before
    assert store.read(ALICE) == expected[1]


def vars_of(identity: Identity) -> tuple[str, str, str | None]:
    return identity.issuer, identity.client_id, identity.scope


@pytest.mark.parametrize("where", ["top", "entry", "server metadata"])
def test_deeply_nested_json_is_set_aside_without_recursion_error(store: FileStore, where: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    content = {
        "top": deep,
        "entry": '{"version": 1, "identities": {"k": ' + deep + '}, "servers": {}}',
        "server metadata": '{"version": 1, "identities": {}, "servers": {"s": {"metadata": ' + deep + "}}}",
    }[where]
    plant(store.path, content)
    assert store.read(ALICE) is None
    assert store.metadata(ISSUER) is None
    assert list(store.records()) == []
    first = token()
    put(store, ALICE, first)
    assert store.read(ALICE) == first
    assert len(set_aside(store)) == 1


def test_json_nested_deeper_than_any_cache_is_set_aside(store: FileStore) -> None:
    # json.loads reads as deep as the stack allows, and how deep json.dumps can write that back
    # differs between Python versions; a cache nests a handful of levels, so deeper is not ours.
    put(store, BOB, token())
    data = read_cache(store.path)
    data["identities"]["junk"] = {"nested": json.loads("[" * 40 + "]" * 40)}
    plant(store.path, json.dumps(data))
    assert store.read(BOB) is None
    first = token()
    put(store, ALICE, first)
    assert store.read(ALICE) == first
    assert len(set_aside(store)) == 1


def test_a_cache_with_discovery_metadata_is_not_too_deep(store: FileStore) -> None:
    document = metadata(mtls_endpoint_aliases={"token_endpoint": "https://mtls.example.org/token"}, claims=[["a"]])
    put(store, ALICE, token(), metadata=document)
    assert store.metadata(ISSUER) == document


_SENTINEL = "@@raw@@"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("refresh_token", 12345),
        ("refresh_token", ["rt"]),
        ("refresh_token", {"x": 1}),
        ("access_token", None),
        ("access_token", 7),
        ("access_token", "has a\r\nnewline"),
        ("expires_at", "abc"),
        ("expires_at", 1e308),
        ("expires_at", -1e308),
        ("expires_at", _SENTINEL + "1e400"),
        ("expires_at", _SENTINEL + "NaN"),
        ("expires_at", _SENTINEL + "-Infinity"),
        ("expires_at", 10**400),
        ("expires_at", True),
        ("expires_at", None),
        ("obtained_at", "abc"),
        ("refresh_expires_at", 1e308),
        ("refresh_expires_at", "x"),
        ("token", None),
        ("token", "abc"),
        ("token", []),
        ("token", "missing"),
        ("entry", None),
        ("entry", "abc"),
        ("issuer", 5),
        ("issuer", ["x"]),
        ("scope", 5),
    ],
)
def test_a_malformed_entry_is_ignored(
    store: FileStore, caplog: pytest.LogCaptureFixture, field: str, value: object
) -> None:
    good, bad = token(), token()
    put(store, BOB, good)
    put(store, ALICE, bad)
    data = read_cache(store.path)
    entry = data["identities"][ALICE.key]
    if field == "entry":
        data["identities"][ALICE.key] = value
    elif field in ("issuer", "scope"):
        entry[field] = value
    elif (field, value) == ("token", "missing"):
        del entry["token"]
    elif field == "token":
        entry["token"] = value
    elif value is None and field == "access_token":
        del entry["token"][field]
    else:
        entry["token"][field] = value
    text = json.dumps(data)
    if isinstance(value, str) and value.startswith(_SENTINEL):
        text = text.replace(json.dumps(value), value.removeprefix(_SENTINEL))
    plant(store.path, text)
    with caplog.at_level(logging.DEBUG, logger="deviceauth"):
        assert store.read(ALICE) is None
        assert store.read(BOB) == good
        assert [record.identity for record in store.records()] == [BOB]
        replacement = token()
        with store.transaction(ALICE) as txn:
            assert not isinstance(txn, Written)
            assert txn.token is None
            txn.put(replacement, replacing=None)
    assert store.read(ALICE) == replacement
    assert store.read(BOB) == good
    assert bad.access_token not in caplog.text
    assert str(bad.refresh_token) not in caplog.text


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/null", "/dev/tty"])
def test_a_special_file_in_place_of_the_cache_is_refused_without_blocking(store: FileStore, kind: str) -> None:
    store.path.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(store.path)
    elif not os.path.exists(kind):
        pytest.skip(f"no {kind} here")
    else:
        store.path.symlink_to(kind)
    with pytest.raises(CacheError, match="not a regular file"):
        store.read(ALICE)
    with pytest.raises(CacheError, match="not a regular file"):
        put(store, ALICE, token())
    assert store.path.is_symlink() or stat.S_ISFIFO(store.path.lstat().st_mode)  # left for the user to judge
    assert lock_is_free(store)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "directory"])
def test_a_special_file_as_login_marker_reads_as_no_login(store: FileStore, kind: str) -> None:
    store.path.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(store.login_marker_path)
    elif kind == "directory":
        store.login_marker_path.mkdir()
    else:
        store.login_marker_path.symlink_to(kind)
    assert store.login_in_progress() is None


def test_an_oversized_cache_is_treated_as_corrupt(store: FileStore) -> None:
    first = token()
    put(store, ALICE, first)
    valid = store.path.read_bytes()
    padded = valid + b" " * (_filestore.MAX_CACHE_BYTES - len(valid) + 1)  # still valid JSON, but too large
    assert _filestore.MAX_CACHE_BYTES == 8 * 1024 * 1024
    plant(store.path, padded)
    assert store.read(ALICE) is None
    second = token()
    put(store, ALICE, second)
    assert store.read(ALICE) == second
    aside = set_aside(store)
    assert len(aside) == 1
    assert aside[0].stat().st_size == len(padded)


def test_a_cache_at_the_size_limit_is_read(store: FileStore) -> None:
    first = token()
    put(store, ALICE, first)
    valid = store.path.read_bytes()
    plant(store.path, valid + b" " * (_filestore.MAX_CACHE_BYTES - len(valid)))
    assert store.read(ALICE) == first


def test_a_symlinked_cache_is_written_through_and_the_link_stays(store: FileStore, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "tokens.json"
    first = token()
    put(FileStore(real), ALICE, first)
    store.path.parent.mkdir(parents=True)
    store.path.symlink_to(real)
    before = real.stat().st_ino
    assert store.read(ALICE) == first
    second = token()
    put(store, ALICE, second)
    assert store.path.is_symlink()
    assert os.readlink(store.path) == str(real)
    assert real.stat().st_ino != before  # the target was replaced atomically, not truncated
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert FileStore(real).read(ALICE) == second
    assert store.read(ALICE) == second
    assert sorted(p.name for p in real.parent.iterdir()) == ["tokens.json", "tokens.json.lock"]  # no temp files
    assert store.lock_path.is_file()  # the lock stays beside the link, where every process names it


def test_a_dangling_cache_symlink_creates_its_target(store: FileStore, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.json"
    store.path.parent.mkdir(parents=True)
    store.path.symlink_to(real)
    first = token()
    put(store, ALICE, first)
    assert store.path.is_symlink()
    assert FileStore(real).read(ALICE) == first


def test_a_corrupt_symlinked_cache_is_set_aside_next_to_its_target(store: FileStore, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.json"
    real.write_text("{broken")
    store.path.parent.mkdir(parents=True)
    store.path.symlink_to(real)
    put(store, ALICE, token())
    assert store.path.is_symlink()
    assert [p.read_text() for p in tmp_path.glob("elsewhere.json.corrupt-*")] == ["{broken"]


@pytest.mark.skipif(not hasattr(os, "lchown") or os.geteuid() != 0, reason="needs root to plant another user's link")
def test_a_cache_symlink_planted_by_another_user_is_not_written_through(store: FileStore, tmp_path: Path) -> None:
    # In a shared directory, another user's link must not aim our write at a file of our choosing.
    victim = tmp_path / "victim"
    victim.write_text("precious")
    store.path.parent.mkdir(parents=True)
    store.path.symlink_to(victim)
    os.lchown(store.path, 54321, 54321)
    with pytest.raises(CacheError, match="another user"):
        put(store, ALICE, token())
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_a_directory_others_can_write_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    shared = tmp_path / f"shared-{mode:o}"
    shared.mkdir()
    shared.chmod(mode)
    store = FileStore(shared / ".tokens.json")
    with caplog.at_level(logging.WARNING, logger="deviceauth"):
        put(store, ALICE, token())
        put(store, BOB, token())
        touch_store(FileStore(shared / ".tokens.json"))
    warnings = [r for r in caplog.records if "writable by other users" in r.getMessage()]
    assert len(warnings) == 1
    assert str(shared) in warnings[0].getMessage()
    assert "chmod go-w" in warnings[0].getMessage()


def test_the_login_marker_never_follows_a_planted_link(store: FileStore, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    store.path.parent.mkdir(parents=True)
    marker = store.login_marker_path
    predictable = [
        marker.with_name(f"{marker.name}.{os.getpid()}.tmp"),
        marker.with_name(f"{marker.name}.tmp"),
        marker.with_name(f"{marker.name}.{os.getpid()}"),
        marker.with_name(f"{store.path.name}.{os.getpid()}.tmp"),
    ]
    for name in predictable:
        name.symlink_to(victim)
    marker.symlink_to(victim)
    with store.transaction(ALICE) as txn:
        assert not isinstance(txn, Written)
        with txn.login_marker(time.time() + 60):
            assert store.login_in_progress() is not None
            assert not marker.is_symlink()  # the link was replaced, not written through
        txn.put(token(), replacing=None)
    assert victim.read_text() == "precious"
    assert not marker.exists()


def test_the_login_marker_temp_name_is_unpredictable(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace
    sources: list[str] = []

    def recording_replace(src: str, dst: str) -> None:
        sources.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    with store.transaction(ALICE) as txn:
        assert not isinstance(txn, Written)
        for _ in range(2):
            with txn.login_marker(time.time() + 60):
                pass
    assert len(sources) == 2
    assert sources[0] != sources[1]
    assert all(str(os.getpid()) not in name and name.startswith(".tokens.json.login.") for name in sources)


def test_a_failed_login_marker_is_logged_and_leaves_no_temp_file(
    store: FileStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.path.parent.mkdir(parents=True)
    store.login_marker_path.mkdir()  # nothing can be renamed over a directory
    with caplog.at_level(logging.WARNING, logger="deviceauth"), store.transaction(ALICE) as txn:
        assert not isinstance(txn, Written)
        with txn.login_marker(time.time() + 60):
            assert list(store.path.parent.glob("*.tmp")) == []
    assert "cannot advertise the login" in caplog.text


def test_a_file_store_pickles_as_the_way_to_reopen_it(store: FileStore) -> None:
    first = token()
    put(store, ALICE, first)
    copy = pickle.loads(pickle.dumps(store))  # noqa: S301 - our own object
    assert isinstance(copy, FileStore)
    assert (copy.path, copy.lock_path, copy.login_marker_path, copy.lock_timeout, copy.location) == (
        store.path,
        store.lock_path,
        store.login_marker_path,
        store.lock_timeout,
        store.location,
    )
    assert copy.read(ALICE) == first
    second = token()
    put(copy, ALICE, second)
    assert store.read(ALICE) == second
    assert repr(copy) == repr(store)


_audit_events: list[str] | None = None
_audit_hook_installed = False


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _audit_events is not None and (event == "open" or event.startswith(("os.", "shutil.", "pathlib."))):
        _audit_events.append(event)


@pytest.fixture
def file_events() -> Callable[[Callable[[], object]], list[str]]:
    global _audit_hook_installed
    if not _audit_hook_installed:
        sys.addaudithook(_audit)  # cannot be removed; it records only inside `record`
        _audit_hook_installed = True

    def record(call: Callable[[], object]) -> list[str]:
        global _audit_events
        _audit_events = []
        try:
            call()
            return _audit_events
        finally:
            _audit_events = None

    return record


def test_creating_or_unpickling_a_file_store_does_no_file_io(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_events: Callable[[Callable[[], object]], list[str]]
) -> None:
    missing = tmp_path / "not" / "yet" / ".tokens.json"
    assert file_events(lambda: FileStore(missing, lock_timeout=1)) == []
    monkeypatch.setenv("DEVICEAUTH_CACHE", str(missing))
    assert file_events(FileStore) == []
    pickled = pickle.dumps(FileStore(missing))
    assert file_events(lambda: pickle.loads(pickled)) == []  # noqa: S301 - our own object
    assert not (tmp_path / "not").exists()
    existing = tmp_path / "existing.json"
    put(FileStore(existing), ALICE, token())
    assert "open" in file_events(lambda: FileStore(existing).read(ALICE))  # the hook does see file access


# -- random hostile caches: the only outcomes are a token, nothing, or a CacheError ----------------

_HOSTILE_LEAVES: tuple[object, ...] = (
    None,
    True,
    0,
    -1,
    2**63,
    10**400,
    1e308,
    -1e308,
    0.5,
    "",
    "abc",
    "\x1b[31m\r\n",
    "x" * 70_000,
    "1e400",
    "NaN",
)
_RAW_NUMBERS = ("1e400", "-1e400", "NaN", "Infinity", "1" * 5000)


def _hostile_value(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth >= 4 or roll < 0.5:
        return rng.choice(_HOSTILE_LEAVES)
    if roll < 0.75:
        return [_hostile_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    keys = ["access_token", "expires_at", "refresh_token", "token", "issuer", "metadata", "version", "k"]
    return {rng.choice(keys): _hostile_value(rng, depth + 1) for _ in range(rng.randrange(3))}


def _containers(value: object) -> list[dict[str, Any] | list[Any]]:
    found: list[dict[str, Any] | list[Any]] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            found.append(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            found.append(item)
            pending.extend(item)
    return found


def _hostile_cache(rng: random.Random, valid: dict[str, Any]) -> bytes:
    data = json.loads(json.dumps(valid))
    for _ in range(rng.randrange(1, 4)):
        target = rng.choice(_containers(data))
        if isinstance(target, dict) and target:
            target[rng.choice(list(target))] = _hostile_value(rng)
        elif isinstance(target, list) and target:
            target[rng.randrange(len(target))] = _hostile_value(rng)
    text = json.dumps(data)
    for raw in _RAW_NUMBERS:  # literals json.dumps would never write
        if rng.random() < 0.2:
            text = text.replace('"' + raw[:20] + '"', raw, 1)
    content = bytearray(text.encode())
    if rng.random() < 0.3:  # and some byte-level damage
        for _ in range(rng.randrange(1, 4)):
            position = rng.randrange(len(content))
            content[position : position + rng.randrange(3)] = bytes([rng.randrange(256)])
    return bytes(content)


def _check_token(found: Token | None) -> None:
    if found is not None:
        assert valid_token_text(found.access_token)
        assert found.refresh_token is None or valid_token_text(found.refresh_token)
        # finite, and a time datetime can show (up to the year 9999), or the CLI's status breaks
        assert all(
            0 <= t < 253_402_300_800 for t in (found.expires_at, found.obtained_at, found.refresh_expires_at or 0)
        )


@pytest.mark.timeout(60)
def test_random_hostile_caches_give_a_token_nothing_or_a_cache_error(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(store, ALICE, token(), metadata=metadata())
    put(store, BOB, token())
    valid = read_cache(store.path)
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is not what this test is about
    rng = random.Random(7)  # fixed: a failure reproduces
    outcomes: dict[str, int] = {"token": 0, "nothing": 0, "refused": 0}
    refusals: set[str] = set()
    for _ in range(300):
        plant(store.path, _hostile_cache(rng, valid))
        for identity in (ALICE, BOB):
            try:
                found = store.read(identity)
                _check_token(found)
                for record in store.records():
                    _check_token(record.token)
                assert store.metadata(ISSUER) is None or isinstance(store.metadata(ISSUER), dict)
                put(store, identity, token())
            except CacheError as exc:
                outcomes["refused"] += 1
                refusals.add(str(exc).split(",")[0])
            else:
                outcomes["token" if found else "nothing"] += 1
        for aside in set_aside(store):
            aside.unlink()
    assert min(outcomes.values()) > 0, outcomes  # the generator reaches every outcome
    assert all("format version" in refusal for refusal in refusals), refusals
