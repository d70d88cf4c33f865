"""What ``DeviceAuth(cache=...)`` and ``DEVICEAUTH_CACHE`` name, turned into a ``TokenStore``."""

from __future__ import annotations

import os
from pathlib import Path

from ._filestore import FileStore
from ._store import TokenStore

__all__ = ["STORE_URL_SCHEMES", "open_store"]

STORE_URL_SCHEMES = ("redis://", "rediss://", "unix://")


def open_store(cache: str | os.PathLike[str] | TokenStore | None, *, lock_timeout: float | None = None) -> TokenStore:
    """A path (or None: the default file), a store URL (``redis://``, ``rediss://``, ``unix://``) or a store."""
    if isinstance(cache, TokenStore) and not isinstance(cache, str | os.PathLike):
        return cache
    if cache is None:
        cache = os.environ.get("DEVICEAUTH_CACHE") or None
    if isinstance(cache, str) and cache.startswith(STORE_URL_SCHEMES):
        from ._redisstore import RedisStore

        return RedisStore.from_url(cache, lock_timeout=lock_timeout)
    if cache is not None and not isinstance(cache, str | os.PathLike):
        raise TypeError(f"cache must be a path, a store URL or a TokenStore, not {type(cache).__name__}")

    return FileStore(Path(cache) if cache is not None else None, lock_timeout=lock_timeout)
