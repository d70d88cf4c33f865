"""What only the Redis store has to get right: URLs and secrets, its lock's expiry and fencing,
hostile values, encryption at rest, and Redis failing (refused, wrong password, out of memory,
stopped and restarted with its data gone), all against a real redis-server."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis_server
import redis_workers
from cryptography.fernet import Fernet
from redis_workers import IDENTITY, token

from deviceauth._exceptions import CacheError, DeviceAuthError, LockTimeout
from deviceauth._location import open_store
from deviceauth._redisstore import RedisStore, _hash
from deviceauth._store import StaleWrite, Written

SPAWN = multiprocessing.get_context("spawn")
JOIN = 30.0
H = _hash(IDENTITY.key)


def _put(store: RedisStore, new: Any, *, replacing: str | None) -> None:
    with store.transaction(IDENTITY) as tx:
        assert not isinstance(tx, Written)
        tx.put(new, replacing=replacing)


def _started(proc: Any, ready: Path) -> None:
    proc.start()
    redis_workers.wait_for(ready, JOIN)


# -- URLs, reprs, pickles ---------------------------------------------------------------------


def test_url_forms_name_the_store_without_the_password(redis_srv: redis_server.RedisServer) -> None:
    store = RedisStore(redis_srv.url(3) + "?prefix=deviceauth:team:&lock_ttl=2")
    assert store.location == f"redis://deviceauth@127.0.0.1:{redis_srv.port}/3/deviceauth:team:"
    assert store.lock_ttl == 2.0
    for shown in (store.location, repr(store), str(store)):
        assert redis_srv.password not in shown
    _put(store, token("one"), replacing=None)
    admin = redis.Redis(port=redis_srv.port, username="default", password=redis_srv.admin_password, db=3)
    assert admin.exists(f"deviceauth:team:id:{H}") == 1
    assert RedisStore(redis_srv.url(3)).read(IDENTITY) is None  # another prefix is another store
    assert RedisStore(redis_srv.url(4) + "?prefix=deviceauth:team:").read(IDENTITY) is None  # and another db


def test_the_location_reopens_the_store(redis_srv: redis_server.RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVICEAUTH_REDIS_PASSWORD", redis_srv.password)
    for url in (
        redis_srv.url(5) + "?prefix=deviceauth:x:",
        f"unix://{redis_srv.socket_path}?db=5&prefix=deviceauth:x:",
    ):
        store = RedisStore(url, username="deviceauth")
        if store.read(IDENTITY) is None:  # the second URL names the same database: written once
            _put(store, token("one"), replacing=None)
        again = RedisStore(store.location)
        assert again.location == store.location
        assert again.read(IDENTITY) is not None
        assert again.read(IDENTITY) == store.read(IDENTITY)


def test_the_acl_user_is_confined_to_its_prefix(redis_srv: redis_server.RedisServer) -> None:
    store = RedisStore(redis_srv.url(), prefix="elsewhere:")
    with pytest.raises(CacheError, match="lacks a permission") as caught:
        store.read(IDENTITY)
    assert redis_srv.password not in str(caught.value)


def test_unix_socket_url_and_password_argument(redis_srv: redis_server.RedisServer) -> None:
    store = RedisStore(f"unix://{redis_srv.socket_path}?db=2", username="deviceauth", password=redis_srv.password)
    assert store.location.startswith("unix://") and redis_srv.password not in repr(store)
    _put(store, token("one"), replacing=None)
    assert store.read(IDENTITY) == RedisStore(
        f"unix://deviceauth:{redis_srv.password}@{redis_srv.socket_path}?db=2"
    ).read(IDENTITY)


def test_password_from_the_environment(redis_srv: redis_server.RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVICEAUTH_REDIS_PASSWORD", redis_srv.password)
    store = open_store(f"redis://deviceauth@127.0.0.1:{redis_srv.port}/0", lock_timeout=1)
    assert isinstance(store, RedisStore) and store.lock_timeout == 1
    assert store.read(IDENTITY) is None
    assert redis_srv.password not in pickle.dumps(store).decode("latin-1")  # re-read from the env, not pickled


@pytest.mark.parametrize(
    "url",
    ["redis://h:notaport/0", "redis://h/zero", "redis://h/0?bogus=1", "unix://", "http://h/0"],
)
def test_bad_urls_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError, match=r"URL|db|database") as caught:
        RedisStore(url.replace("h", "user:hunter2@h", 1) if url.startswith("redis") else url)
    assert "hunter2" not in str(caught.value)


def test_pickles_reopen_in_another_process(redis_url: str, tmp_path: Path) -> None:
    store = RedisStore(redis_url, lock_ttl=3)
    _put(store, token("one"), replacing=None)
    clone = pickle.loads(pickle.dumps(store))  # noqa: S301 (our own bytes)
    assert clone.lock_ttl == 3 and clone.read(IDENTITY) == store.read(IDENTITY)
    with SPAWN.Pool(1) as pool:
        assert pool.apply(_read_access, (store,)) == "access-one"


def _read_access(store: RedisStore) -> str | None:
    found = store.read(IDENTITY)
    return found.access_token if found else None


def test_a_store_built_on_a_live_client_refuses_to_pickle(redis_srv: redis_server.RedisServer) -> None:
    client = redis.Redis(port=redis_srv.port, username="deviceauth", password=redis_srv.password)
    store = RedisStore(client)
    assert store.read(IDENTITY) is None
    assert redis_srv.password not in repr(store)
    with pytest.raises(TypeError, match="from a URL"):
        pickle.dumps(store)


# -- the lock ---------------------------------------------------------------------------------


def test_waiters_sleep_on_the_channel_instead_of_polling(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RedisStore(redis_url, lock_ttl=30)
    attempts = []
    original = RedisStore._try_lock

    def counted(self: RedisStore, *args: Any, **kwargs: Any) -> Any:
        attempts.append(1)
        return original(self, *args, **kwargs)

    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with RedisStore(redis_url, lock_ttl=30).transaction(IDENTITY) as tx:
            assert not isinstance(tx, Written)
            holding.set()
            release.wait(JOIN)
            tx.put(token("fresh"), replacing=None)

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(JOIN)
    threading.Timer(2.0, release.set).start()
    monkeypatch.setattr(RedisStore, "_try_lock", counted)
    monkeypatch.setattr("deviceauth._redisstore._SUBSCRIBED_LONGEST", 60.0)  # only a message wakes it
    with store.transaction(IDENTITY, usable=lambda t: True) as got:
        assert isinstance(got, Written)
    thread.join(JOIN)
    # 2 s of waiting: a poller (10 ms .. 250 ms) would try ~15 times. A subscriber tries once before
    # subscribing, once after (a write in between), and once when the holder's write is published.
    assert len(attempts) == 3


def test_without_a_subscription_waiters_fall_back_to_polling(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RedisStore, "_subscribe", lambda self, channel: None)
    store = RedisStore(redis_url)
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with RedisStore(redis_url).transaction(IDENTITY) as tx:
            assert not isinstance(tx, Written)
            holding.set()
            release.wait(JOIN)

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(JOIN)
    threading.Timer(0.5, release.set).start()
    with store.transaction(IDENTITY) as got:
        assert not isinstance(got, Written)
    thread.join(JOIN)


def test_a_killed_holder_loses_the_lock_within_its_ttl(redis_url: str, tmp_path: Path) -> None:
    store = RedisStore(redis_url, lock_ttl=1.0, lock_timeout=20)
    for login_for in (0.0, 600.0):  # mid-refresh, then mid-login (the device code would live 10 min)
        ready = tmp_path / f"ready-{login_for}"
        proc = SPAWN.Process(target=redis_workers.hold_forever, args=(store, str(ready), login_for))
        try:
            _started(proc, ready)
            if login_for:
                assert store.login_in_progress() is not None
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(JOIN)
        seen: list[Any] = []
        with store.transaction(IDENTITY, on_wait=seen.append) as tx:  # within lock_timeout: no LockTimeout
            assert not isinstance(tx, Written)
            tx.put(token(f"after-{login_for}"), replacing=tx.token.refresh_token if tx.token else None)
        assert store.login_in_progress() is None  # the dead login's marker expired with its lock
        assert store.read(IDENTITY).access_token == f"access-after-{login_for}"  # type: ignore[union-attr]


def test_a_paused_holder_cannot_overwrite_the_newer_session(redis_url: str, tmp_path: Path) -> None:
    store = RedisStore(redis_url, lock_ttl=0.5, lock_timeout=20)
    _put(store, token("one"), replacing=None)
    ready, go, result = tmp_path / "ready", tmp_path / "go", tmp_path / "result"
    proc = SPAWN.Process(target=redis_workers.hold_then_put, args=(store, str(ready), str(go), str(result)))
    _started(proc, ready)
    os.kill(proc.pid, signal.SIGSTOP)  # its keep-alive thread stops too: the lock expires
    try:
        with store.transaction(IDENTITY) as tx:
            assert not isinstance(tx, Written)
            tx.put(token("two"), replacing="refresh-one")
        go.touch()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    proc.join(JOIN)
    assert proc.exitcode == 0
    assert json.loads(result.read_text()) == {"started_from": "refresh-one", "wrote": False}
    assert store.read(IDENTITY).access_token == "access-two"  # type: ignore[union-attr]


def test_keep_alive_takes_back_an_expired_lock_only_if_nothing_changed(redis_url: str) -> None:
    store = RedisStore(redis_url, lock_ttl=0.2)
    _put(store, token("one"), replacing=None)
    with store.transaction(IDENTITY) as tx:
        assert not isinstance(tx, Written)
        store.lock_ttl = 60.0  # (the holder's background thread now sleeps 20 s: the lock is left to expire)
        time.sleep(0.5)
        tx.keep_alive()  # expired, nobody else came: taken back
        with pytest.raises(LockTimeout), RedisStore(redis_url, lock_timeout=0.3).transaction(IDENTITY):
            pass
    with store.transaction(IDENTITY) as tx:
        assert not isinstance(tx, Written)
        store._client.delete(f"deviceauth:lock:{H}")  # as if it expired and ...
        _put(RedisStore(redis_url), token("two"), replacing="refresh-one")  # ... another holder refreshed
        with pytest.raises(StaleWrite):
            tx.keep_alive()


def test_a_lock_without_expiry_still_times_out(redis_srv: redis_server.RedisServer) -> None:
    redis_srv.admin().set(f"deviceauth:lock:{H}", "someone")  # hostile or broken: no TTL
    store = RedisStore(redis_srv.url(), lock_timeout=0.5)
    with pytest.raises(LockTimeout, match="another process holds it"), store.transaction(IDENTITY):
        pass


# -- hostile values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "corrupt",
    [
        ("set", "not a hash"),
        ("hset", b"{not json"),
        ("hset", json.dumps({"identity": "nope", "token": {}})),
        ("hset", json.dumps({"identity": {"issuer": IDENTITY.issuer, "client_id": "x"}, "token": {}})),
        ("hset", b"\xff\xfe"),
        ("hset", json.dumps({"identity": {"issuer": IDENTITY.issuer, "client_id": IDENTITY.client_id,
                                          "scope": IDENTITY.scope},
                             "token": {"access_token": "a", "expires_at": "soon", "refresh_token": ["x"]}})),
        ("hset", json.dumps([[[[[[[[[[1]]]]]]]]]] * 3)),
        ("hset", b"x" * (300 * 1024)),
        ("hset", b"[" * 200_000),
    ],
)  # fmt: skip
def test_corrupt_entries_read_as_nothing_and_can_be_replaced(
    redis_srv: redis_server.RedisServer, corrupt: tuple[str, Any]
) -> None:
    admin, key = redis_srv.admin(), f"deviceauth:id:{H}"
    kind, value = corrupt
    if kind == "set":
        admin.set(key, value)
    else:
        admin.hset(key, mapping={"data": value, "rt": "whatever"})
    admin.sadd("deviceauth:identities", H)
    store = RedisStore(redis_srv.url())
    assert store.read(IDENTITY) is None
    assert list(store.records()) == []
    with store.transaction(IDENTITY) as tx:
        assert not isinstance(tx, Written)
        assert tx.token is None
        tx.put(token("good"), replacing=None)  # replacing what was read under the lock: allowed
    assert store.read(IDENTITY).access_token == "access-good"  # type: ignore[union-attr]


def test_hostile_bookkeeping_keys_do_not_break_writes(redis_srv: redis_server.RedisServer) -> None:
    admin = redis_srv.admin()
    admin.hset("deviceauth:version", mapping={"a": "b"})
    admin.set(f"deviceauth:login:{H}", json.dumps({"pid": "x", "host": 1, "expires_at": 1e300}))
    admin.hset("deviceauth:login:other", mapping={"a": "b"})
    admin.set("deviceauth:login:deep", "[" * 4000)
    admin.set(f"deviceauth:server:{_hash('https://deep.example')}", "[" * 200_000)
    admin.set(f"deviceauth:server:{_hash(IDENTITY.issuer)}", b"\x00" * 10)
    store = RedisStore(redis_srv.url())
    assert store.metadata(IDENTITY.issuer) is None and store.login_in_progress() is None
    assert store.metadata("https://deep.example") is None
    _put(store, token("one"), replacing=None)
    assert store.version() is not None
    assert store.read(IDENTITY) is not None


def test_another_identitys_entry_under_our_key_is_ignored(redis_srv: redis_server.RedisServer) -> None:
    store = RedisStore(redis_srv.url())
    other = type(IDENTITY)(IDENTITY.issuer, "intruder", None)
    _put_as(store, other, token("theirs"))
    admin = redis_srv.admin()
    admin.rename(f"deviceauth:id:{_hash(other.key)}", f"deviceauth:id:{H}")
    assert store.read(IDENTITY) is None


def _put_as(store: RedisStore, identity: Any, new: Any) -> None:
    with store.transaction(identity) as tx:
        assert not isinstance(tx, Written)
        tx.put(new, replacing=None)


# -- encryption at rest -----------------------------------------------------------------------


def test_encrypted_tokens_are_unreadable_in_redis_and_need_the_key(redis_srv: redis_server.RedisServer) -> None:
    key = Fernet.generate_key()
    store = RedisStore(redis_srv.url(), encryption_key=key)
    _put(store, token("secret"), replacing=None)
    dump = b"".join(redis_srv.admin().hvals(f"deviceauth:id:{H}"))
    assert b"access-secret" not in dump and b"refresh-secret" not in dump
    assert store.read(IDENTITY).access_token == "access-secret"  # type: ignore[union-attr]
    for wrong in (RedisStore(redis_srv.url(), encryption_key=Fernet.generate_key()), RedisStore(redis_srv.url())):
        with pytest.raises(CacheError) as caught:
            wrong.read(IDENTITY)
        assert "encrypt" in str(caught.value) and key.decode() not in str(caught.value)
    with pytest.raises(ValueError, match="Fernet key"):
        RedisStore(redis_srv.url(), encryption_key="not a key")


def test_a_plaintext_entry_is_an_error_for_an_encrypting_store(redis_url: str) -> None:
    _put(RedisStore(redis_url), token("plain"), replacing=None)
    with pytest.raises(CacheError, match="not encrypted"):
        RedisStore(redis_url, encryption_key=Fernet.generate_key()).read(IDENTITY)


# -- Redis failing ----------------------------------------------------------------------------


def test_nothing_listening_is_a_prompt_typed_error() -> None:
    store = RedisStore("redis://deviceauth:hunter2@127.0.0.1:9/0", socket_timeout=2)
    with pytest.raises(CacheError, match="cannot reach Redis") as caught:
        store.read(IDENTITY)
    assert isinstance(caught.value, DeviceAuthError) and caught.value.path == store.location  # type: ignore[attr-defined]
    assert "hunter2" not in str(caught.value)


def test_a_wrong_password_is_a_typed_error_without_the_password(redis_srv: redis_server.RedisServer) -> None:
    store = RedisStore(redis_srv.url(password="wrong-password-123"))
    with pytest.raises(CacheError, match="refused the username or password") as caught:
        store.read(IDENTITY)
    assert "wrong-password-123" not in str(caught.value)


def test_out_of_memory_is_a_typed_error(redis_srv: redis_server.RedisServer) -> None:
    store = RedisStore(redis_srv.url())
    assert store.read(IDENTITY) is None
    redis_srv.admin().config_set("maxmemory", 1)
    with pytest.raises(CacheError, match="out of memory"):
        _put(store, token("one"), replacing=None)


def test_redis_stopped_then_restarted_empty(redis_srv: redis_server.RedisServer) -> None:
    store = RedisStore(redis_srv.url(), socket_timeout=2)
    _put(store, token("one"), replacing=None)
    redis_srv.stop()
    for call in (lambda: store.read(IDENTITY), store.version, lambda: _put(store, token("x"), replacing=None)):
        with pytest.raises(CacheError, match="cannot reach Redis"):
            call()
    redis_srv.start()  # persistence is off: the data is gone, and the scripts must be loaded again
    assert store.read(IDENTITY) is None
    _put(store, token("two"), replacing=None)
    assert store.read(IDENTITY).access_token == "access-two"  # type: ignore[union-attr]


def test_a_read_only_replica_is_a_typed_error_on_write(redis_srv: redis_server.RedisServer) -> None:
    with redis_server.RedisServer(replica_of=redis_srv) as replica:
        store = RedisStore(replica.url())
        assert store.read(IDENTITY) is None  # reads work on a replica
        with pytest.raises(CacheError, match="read-only replica"):
            _put(store, token("one"), replacing=None)


def test_a_server_that_never_answers_is_a_bounded_typed_error() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        store = RedisStore(f"redis://deviceauth:hunter2@127.0.0.1:{silent.getsockname()[1]}/0", socket_timeout=0.5)
        with pytest.raises(CacheError, match=r"did not answer within 0.5 s") as caught:
            store.read(IDENTITY)
    assert "hunter2" not in str(caught.value)
