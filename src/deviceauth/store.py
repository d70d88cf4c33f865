"""Everything needed to use or write a token store.

    from deviceauth.store import FileStore, RedisStore, TokenStore

``FileStore`` is the default (``.tokens.json`` beside a lock file); ``RedisStore`` (the
``deviceauth[redis]`` extra) shares one session between many hosts. To keep tokens somewhere
else, implement ``TokenStore`` (see ``deviceauth._store`` for the contract) and pass the object
as ``DeviceAuth(cache=...)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._filestore import FileStore
from ._location import open_store
from ._settings import Identity
from ._store import LoginInProgress, Record, StaleWrite, TokenStore, Transaction, Written

if TYPE_CHECKING:
    from ._redisstore import RedisStore

__all__ = [
    "FileStore",
    "Identity",
    "LoginInProgress",
    "Record",
    "RedisStore",
    "StaleWrite",
    "TokenStore",
    "Transaction",
    "Written",
    "open_store",
]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":  # redis-py is an optional extra: import it only when asked for
        from ._redisstore import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
