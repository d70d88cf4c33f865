"""The TokenStore contract, run over every store: the file store and the Redis store.

What the engine relies on, at the store level: lock-free reads, a version that moves on every
change, transactions that exclude each other across processes, the hand-off to a waiter when
the holder wrote what it needs, compare-and-set and compare-and-delete, the login marker,
records and forget, corrupt values, and pickling.
"""

from __future__ import annotations

import multiprocessing
import pickle
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis_workers
from redis_workers import IDENTITY, token

from deviceauth._exceptions import LockTimeout
from deviceauth._store import LoginInProgress, StaleWrite, TokenStore, Transaction, Written

SPAWN = multiprocessing.get_context("spawn")
OTHER = type(IDENTITY)("https://issuer.example/realms/test", "another-client", None)
JOIN = 30.0


def _put(store: TokenStore, new: Any, *, replacing: str | None, identity: Any = IDENTITY) -> None:
    with store.transaction(identity) as tx:
        assert not isinstance(tx, Written)
        tx.put(new, replacing=replacing)


def test_empty_store_reads_nothing(make_store: Callable[..., TokenStore]) -> None:
    store = make_store()
    assert store.read(IDENTITY) is None
    assert store.metadata(IDENTITY.issuer) is None
    assert list(store.records()) == []
    assert store.login_in_progress() is None


def test_a_write_is_read_back_and_moves_the_version(make_store: Callable[..., TokenStore]) -> None:
    store = make_store()
    before = store.version()
    first = token("one")
    with store.transaction(IDENTITY) as tx:
        assert not isinstance(tx, Written)
        assert tx.token is None
        tx.put(first, replacing=None, metadata={"issuer": IDENTITY.issuer, "token_endpoint": "https://t"})
        assert tx.token == first
    assert store.version() != before
    assert store.read(IDENTITY) == first
    assert make_store().read(IDENTITY) == first  # a second instance (another process) sees it too
    assert store.metadata(IDENTITY.issuer) == {"issuer": IDENTITY.issuer, "token_endpoint": "https://t"}
    with store.transaction(IDENTITY) as tx:
        assert not isinstance(tx, Written)
        assert tx.token == first
        assert tx.metadata is not None and tx.metadata["token_endpoint"] == "https://t"


def test_put_refuses_when_the_stored_refresh_token_changed(make_store: Callable[..., TokenStore]) -> None:
    store = make_store()
    _put(store, token("one"), replacing=None)
    with pytest.raises(StaleWrite):
        _put(store, token("two"), replacing="refresh-not-the-stored-one")
    with pytest.raises(StaleWrite):
        _put(store, token("two"), replacing=None)  # "nothing stored" is no longer true
    assert store.read(IDENTITY).access_token == "access-one"  # type: ignore[union-attr]
    _put(store, token("two"), replacing="refresh-one")
    assert store.read(IDENTITY).access_token == "access-two"  # type: ignore[union-attr]


def test_delete_compares_the_refresh_token(make_store: Callable[..., TokenStore]) -> None:
    store = make_store()
    _put(store, token("one"), replacing=None)
    _put(store, token("x", refresh=""), replacing=None, identity=OTHER)
    with store.transaction(IDENTITY) as tx:
        assert not isinstance(tx, Written)
        assert tx.delete(unless_changed_from="refresh-someone-else") is False
    assert store.read(IDENTITY) is not None
    version = store.version()
    with store.transaction(IDENTITY) as tx:
        assert not isinstance(tx, Written)
        assert tx.delete(unless_changed_from="refresh-one") is True
    assert store.read(IDENTITY) is None
    assert store.version() != version
    assert store.read(OTHER) is not None  # other identities are never lost


def test_records_and_forget(make_store: Callable[..., TokenStore]) -> None:
    store = make_store()
    _put(store, token("one"), replacing=None)
    _put(store, token("two"), replacing=None, identity=OTHER)
    found = {record.identity: record.token.access_token for record in store.records()}
    assert found == {IDENTITY: "access-one", OTHER: "access-two"}
    forgotten = store.forget(OTHER)
    assert forgotten is not None and forgotten.access_token == "access-two"
    assert store.forget(OTHER) is None
    assert [record.identity for record in store.records()] == [IDENTITY]


def test_transactions_exclude_each_other_across_processes(
    make_store: Callable[..., TokenStore], tmp_path: Path
) -> None:
    store = make_store(lock_timeout=60)
    log = tmp_path / "holds.log"
    procs = [SPAWN.Process(target=redis_workers.log_holds, args=(store, str(log), 5, 0.01)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(JOIN)
        assert p.exitcode == 0
    lines = log.read_text().split()
    assert len(lines) == 4 * 5 * 2
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):
        assert enter.startswith("<") and leave == ">" + enter[1:]  # nobody entered while another was inside


def test_a_waiter_gets_what_the_holder_wrote_without_the_lock(make_store: Callable[..., TokenStore]) -> None:
    store = make_store()
    _put(store, token("stale", life=-1), replacing=None)
    since = store.version()
    holding, wrote, done = threading.Event(), threading.Event(), threading.Event()
    outcome: list[Any] = []

    def holder() -> None:
        with store.transaction(IDENTITY) as tx:
            assert not isinstance(tx, Written)
            holding.set()
            tx.put(token("fresh"), replacing="refresh-stale")
            wrote.set()
            done.wait(JOIN)  # keeps the lock until the waiter has its answer

    def waiter() -> None:
        holding.wait(JOIN)
        other = make_store()
        with other.transaction(IDENTITY, since=since, usable=lambda t: t.expires_at > time.time()) as got:
            outcome.append(got)
        done.set()

    threads = [threading.Thread(target=holder), threading.Thread(target=waiter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert wrote.is_set()
    assert len(outcome) == 1 and isinstance(outcome[0], Written)
    assert outcome[0].token.access_token == "access-fresh"


def test_a_waiter_times_out_while_the_holder_keeps_the_lock(make_store: Callable[..., TokenStore]) -> None:
    store = make_store(lock_ttl=0.3)
    holding, done = threading.Event(), threading.Event()

    def holder() -> None:
        with store.transaction(IDENTITY):
            holding.set()
            done.wait(JOIN)  # past the lock TTL: the holder's keep-alive must keep it

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert holding.wait(JOIN)
        with pytest.raises(LockTimeout), make_store(lock_timeout=1.0, lock_ttl=0.3).transaction(IDENTITY):
            pass
    finally:
        done.set()
        thread.join(JOIN)


def test_a_login_in_progress_extends_the_wait_and_names_itself(make_store: Callable[..., TokenStore]) -> None:
    store = make_store()
    showing, finish = threading.Event(), threading.Event()
    seen: list[LoginInProgress] = []

    def holder() -> None:
        with store.transaction(IDENTITY) as tx:
            assert not isinstance(tx, Written)
            with tx.login_marker(time.time() + 30):
                showing.set()
                finish.wait(JOIN)
            tx.put(token("logged-in"), replacing=None)

    thread = threading.Thread(target=holder)
    thread.start()
    assert showing.wait(JOIN)
    login = store.login_in_progress()
    assert login is not None and login.alive(time.time())
    assert login.host and login.pid > 0
    timer = threading.Timer(2.5, finish.set)  # the login ends after the waiter's lock_timeout
    timer.start()
    waiter = make_store(lock_timeout=1.0)
    with waiter.transaction(IDENTITY, usable=lambda t: True, on_wait=seen.append) as got:
        assert isinstance(got, Written) or got.token is not None
    thread.join(JOIN)
    timer.join(JOIN)
    assert len(seen) == 1 and seen[0].pid == login.pid
    assert store.login_in_progress() is None


def test_a_store_pickles_as_how_to_reopen_it(make_store: Callable[..., TokenStore]) -> None:
    store = make_store()
    _put(store, token("one"), replacing=None)
    copy = pickle.loads(pickle.dumps(store))  # noqa: S301 (our own bytes)
    assert copy.location == store.location
    assert copy.read(IDENTITY) == store.read(IDENTITY)


def test_transaction_is_a_transaction(make_store: Callable[..., TokenStore]) -> None:
    store = make_store()
    assert isinstance(store, TokenStore)
    with store.transaction(IDENTITY) as tx:
        assert not isinstance(tx, Written)
        checked: Transaction = tx
        checked.keep_alive()
