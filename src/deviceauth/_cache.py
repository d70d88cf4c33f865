"""The shared ``.tokens.json`` file: lock-free reads, locked read-modify-write, atomic replace.

Every writer holds ``<cache>.lock`` (a ``filelock.FileLock``; the kernel frees it if the
holder dies, and the file is never deleted, since deleting it would split waiters across
two inodes). A write goes to a private temp file in the same directory, is fsynced and then
renamed over the cache, so a reader without the lock sees the old file or the new one,
never half of one, and a crash at any moment leaves a valid file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from ._exceptions import CacheError, LockTimeout

__all__ = ["CACHE_ENV", "LockedCache", "TokenCache", "default_cache_path"]

log = logging.getLogger("deviceauth.cache")

CACHE_ENV = "DEVICEAUTH_CACHE"
FORMAT_VERSION = 1
# Long enough for a slow refresh round trip; a login in progress extends the wait (see below).
DEFAULT_LOCK_TIMEOUT = 30.0
# Waiters poll the lock (flock has no timeout), first every few ms, backing off to 0.2 s.
_FIRST_WAIT = 0.004
_LONGEST_WAIT = 0.2
_LOGIN_CHECK_EVERY = 0.5


def default_cache_path() -> Path:
    """``$DEVICEAUTH_CACHE``, else ``$XDG_CACHE_HOME/deviceauth/.tokens.json`` (``~/.cache`` by default)."""
    if configured := os.environ.get(CACHE_ENV):
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deviceauth" / ".tokens.json"


def _empty() -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "identities": {}, "servers": {}}


@dataclass(frozen=True, slots=True)
class LoginInProgress:
    """Written beside the cache while a device login holds the lock, so waiters know why."""

    pid: int
    host: str
    started_at: float
    expires_at: float

    def alive(self, now: float) -> bool:
        if now >= self.expires_at:
            return False
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class TokenCache:
    """One cache file shared by every identity, process and thread that names it."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, lock_timeout: float | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_cache_path()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.login_marker_path = self.path.with_name(self.path.name + ".login")
        self.lock_timeout = DEFAULT_LOCK_TIMEOUT if lock_timeout is None else lock_timeout

    def __repr__(self) -> str:
        return f"TokenCache({str(self.path)!r})"

    def read(self) -> dict[str, Any]:
        """The current contents without taking the lock; a missing or corrupt file reads as empty."""
        raw = self._read_bytes()
        try:
            return _empty() if raw is None else _parse(raw)
        except (ValueError, UnicodeDecodeError):
            return _empty()

    def _read_bytes(self) -> bytes | None:
        """The file's bytes, or None when there is no file yet."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheError(f"cannot read the token cache {self.path}: {exc.strerror}", path=str(self.path)) from exc

    def stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever the file is replaced (every write is a new inode): a cheap "did it change?"."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    @contextlib.contextmanager
    def locked(
        self,
        *,
        on_wait: Callable[[LoginInProgress], None] | None = None,
        stop_waiting: Callable[[], bool] | None = None,
    ) -> Iterator[LockedCache | None]:
        """Hold the cache lock and yield the contents as re-read under it.

        Waits at most ``lock_timeout`` seconds, except while another process is running a
        device login under the lock: then it waits until that login's code expires, and
        tells ``on_wait`` once where the login is happening. While waiting it asks
        ``stop_waiting`` now and then; when that says the wait is pointless (the holder already
        wrote what we need), it yields None without taking the lock, so a herd of waiters does
        not queue for a lock none of them needs any more.
        """
        self._make_parent()
        lock = filelock.FileLock(self.lock_path, mode=0o600)
        if not self._acquire(lock, on_wait, stop_waiting):
            yield None
            return
        try:
            yield LockedCache(self, self._load_for_update())
        finally:
            lock.release()

    def _acquire(
        self,
        lock: filelock.FileLock,
        on_wait: Callable[[LoginInProgress], None] | None,
        stop_waiting: Callable[[], bool] | None,
    ) -> bool:
        deadline = time.monotonic() + self.lock_timeout
        next_login_check = time.monotonic() + _LOGIN_CHECK_EVERY
        told = False
        wait = _FIRST_WAIT
        while True:
            try:
                lock.acquire(timeout=wait, poll_interval=wait / 2)
                return True
            except filelock.Timeout:
                pass
            if stop_waiting is not None and stop_waiting():
                return False
            wait = min(wait * 1.5, _LONGEST_WAIT)  # quick hand-over after a refresh, calm during a login
            if time.monotonic() >= next_login_check:
                next_login_check = time.monotonic() + _LOGIN_CHECK_EVERY
                login = self.login_in_progress()
                if login is not None and login.alive(time.time()):
                    if not told and on_wait is not None:
                        on_wait(login)
                    told = True
                    deadline = max(deadline, time.monotonic() + (login.expires_at - time.time()) + _LONGEST_WAIT)
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"timed out after {self.lock_timeout:g} s waiting for the token cache lock {self.lock_path}; "
                    "another process holds it",
                    lock_file=str(self.lock_path),
                )

    def login_in_progress(self) -> LoginInProgress | None:
        try:
            data = json.loads(self.login_marker_path.read_bytes())
            return LoginInProgress(
                pid=int(data["pid"]),
                host=str(data["host"]),
                started_at=float(data["started_at"]),
                expires_at=float(data["expires_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _make_parent(self) -> None:
        parent = self.path.parent
        if not parent.is_dir():
            try:
                parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise CacheError(f"cannot create the cache directory {parent}: {exc.strerror}") from exc

    def _load_for_update(self) -> dict[str, Any]:
        raw = self._read_bytes()
        if raw is None:
            return _empty()
        try:
            return _parse(raw)
        except (ValueError, UnicodeDecodeError):
            aside = self.path.with_name(
                f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns()}"
            )
            try:
                os.replace(self.path, aside)
            except OSError as exc:
                raise CacheError(
                    f"the token cache {self.path} is unreadable and cannot be moved aside: {exc.strerror}"
                ) from exc
            log.warning("the token cache %s was unreadable; moved it to %s and started a new one", self.path, aside)
            return _empty()

    def _write(self, data: dict[str, Any]) -> None:
        payload = json.dumps(data, indent=1, sort_keys=True).encode()
        self._remove_stray_temp_files()
        try:
            fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp")
        except OSError as exc:
            raise CacheError(f"cannot write the token cache {self.path}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise CacheError(f"cannot write the token cache {self.path}: {exc.strerror}") from exc
        _fsync_directory(self.path.parent)

    def _remove_stray_temp_files(self) -> None:
        # Only lock holders write temp files, and we hold the lock: any left over are from a crash.
        for stray in self.path.parent.glob(self.path.name + ".*.tmp"):
            with contextlib.suppress(OSError):
                stray.unlink()


class LockedCache:
    """The cache contents while the lock is held; ``save`` replaces the file atomically."""

    def __init__(self, cache: TokenCache, data: dict[str, Any]) -> None:
        self._cache = cache
        self.data = data

    def save(self) -> None:
        self._cache._write(self.data)

    @contextlib.contextmanager
    def login_marker(self, expires_at: float) -> Iterator[None]:
        marker = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time(), "expires_at": expires_at}
        path = self._cache.login_marker_path
        temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(marker))
        os.replace(temp, path)  # waiters never read half a marker
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()


def _parse(raw: bytes) -> dict[str, Any]:
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(data.get(part, {}), dict) for part in ("identities", "servers")
    ):
        raise ValueError("not a deviceauth token cache")
    version = data.setdefault("version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CacheError(f"the token cache has format version {version!r}, newer than this deviceauth understands")
    data.setdefault("identities", {})
    data.setdefault("servers", {})
    return data


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
