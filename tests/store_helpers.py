"""Reading and changing stored tokens through the store's own API, as tests need to.

Tests never write the cache's JSON layout themselves: they ask the store, so a change of layout
(or of store) changes nothing here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from deviceauth import Token
from deviceauth.store import FileStore, Record, Written


def only_record(cache_file: Path) -> Record:
    """The one identity a test's cache holds."""
    (record,) = FileStore(cache_file).records()
    return record


def only_token(cache_file: Path) -> Token:
    return only_record(cache_file).token


def stored_identities(cache_file: Path) -> int:
    return sum(1 for _ in FileStore(cache_file).records())


def rewrite_token(cache_file: Path, **changes: Any) -> Token:
    """Replace fields of the one stored token (e.g. ``expires_at=``, ``access_token=``), as another process would."""
    store = FileStore(cache_file)
    record = only_record(cache_file)
    with store.transaction(record.identity) as txn:
        assert not isinstance(txn, Written)
        assert txn.token is not None
        changed = dataclasses.replace(txn.token, **changes)
        txn.put(changed, replacing=txn.token.refresh_token)
    return changed


def as_a_new_process() -> None:
    """Forget every in-memory token of this process, as a freshly started process has none.

    Every ``DeviceAuth`` for one identity in a process shares one in-memory token; tests that need
    "another process" in this one start from the store this way.
    """
    from deviceauth import _process

    _process.clear()
