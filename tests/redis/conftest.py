"""Fixtures for the Redis store: a private redis-server per session, and one store per backend.

Without ``redis-server`` (Debian package ``redis-server``; scripts/test installs it) every test
that needs it is skipped with the reason, never failed or aborted; without the ``redis`` client
(the ``test`` and ``redis`` extras install it) none of them is collected.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis_server

HAVE_CLIENT = importlib.util.find_spec("redis") is not None
HAVE_FILESTORE = importlib.util.find_spec("deviceauth._filestore") is not None

if not HAVE_CLIENT:  # the `test` extra installs it; without it these tests are not collected at all
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def redis_session() -> Iterator[redis_server.RedisServer]:
    if not redis_server.available():
        pytest.skip(f"{redis_server.REDIS_SERVER} is missing (apt-get install redis-server)")
    with redis_server.RedisServer() as server:
        yield server


@pytest.fixture
def redis_srv(redis_session: redis_server.RedisServer) -> Iterator[redis_server.RedisServer]:
    """The session's server, running and empty (a test may have stopped it or filled it)."""
    if redis_session.process is None:
        redis_session.start()
    admin = redis_session.admin()
    admin.config_set("maxmemory", 0)
    admin.flushall()
    admin.close()
    yield redis_session
    if redis_session.process is None:
        redis_session.start()


_databases = itertools.count(1)


@pytest.fixture
def redis_db() -> int:
    """A database number no earlier test used: this process's in-memory token state is keyed by
    the store's location, so a new location keeps one test's tokens out of the next."""
    return next(_databases) % 64


@pytest.fixture
def redis_url(redis_srv: redis_server.RedisServer, redis_db: int) -> str:
    return redis_srv.url(redis_db)


@pytest.fixture(params=["file", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    """Builds the store under test with the given options; same location on every call."""
    if request.param == "file":
        if not HAVE_FILESTORE:
            pytest.skip("deviceauth._filestore is not on this branch yet")
        from deviceauth._filestore import FileStore

        path = tmp_path / "cache" / ".tokens.json"

        def file_store(**options: Any) -> Any:
            options.pop("lock_ttl", None)
            return FileStore(path, **options)

        return file_store
    server = request.getfixturevalue("redis_srv")
    from deviceauth._redisstore import RedisStore

    def redis_store(**options: Any) -> Any:
        return RedisStore(server.url(), **options)

    return redis_store
