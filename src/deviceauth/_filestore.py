"""``FileStore``: the shared ``.tokens.json`` file, with lock-free reads and locked, atomic writes.

Every writer holds ``<cache>.lock`` (a ``filelock.FileLock``; the kernel frees it if the
holder dies, and the file is never deleted, since deleting it would split waiters across
two inodes). A write goes to a private temp file in the same directory, is fsynced and then
renamed over the cache, so a reader without the lock sees the old file or the new one,
never half of one, and a crash at any moment leaves a valid file.

Everything read from disk is treated as hostile: a special file (FIFO, device) is refused
without blocking, a lock path that is not a regular file is refused, an oversized or deeply
nested or otherwise unreadable cache is set aside and reported, and a malformed entry is
ignored. A cache path that is a symlink is followed: the target is replaced atomically and
the link stays, so a cache kept elsewhere (a dotfiles repository, a mounted secret) is not
silently forked into a second copy; a link another user planted is refused, not followed.

The JSON layout lives here and nowhere else::

    {"version": 1,
     "identities": {"<issuer> <client> <scope>": {"issuer", "client_id", "scope", "token": {...}}},
     "servers": {"<issuer>": {"metadata": {...discovery document...}}}}
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import logging
import math
import os
import stat
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._exceptions import CacheError, LockTimeout
from ._settings import Identity
from ._store import LoginInProgress, Record, StaleWrite, Written
from ._token import Token

if TYPE_CHECKING:
    import filelock

__all__ = ["CACHE_ENV", "FileStore", "default_cache_path"]

log = logging.getLogger("deviceauth.cache")

CACHE_ENV = "DEVICEAUTH_CACHE"
FORMAT_VERSION = 1
# Long enough for a slow refresh round trip; a login in progress extends the wait (see below).
DEFAULT_LOCK_TIMEOUT = 30.0
# Waiters poll the lock (flock has no timeout), first every few ms, backing off to 0.2 s.
_FIRST_WAIT = 0.004
_LONGEST_WAIT = 0.2
_LOGIN_CHECK_EVERY = 0.5
# A cache holds a few KB per identity; anything this large is not ours.
MAX_CACHE_BYTES = 8 * 1024 * 1024
_MAX_MARKER_BYTES = 4096
# Our layout nests 5 levels and discovery documents a few more; deeper is not ours. The bound
# also keeps json.dumps from hitting the recursion limit on data json.loads just managed to read.
_MAX_DEPTH = 32
# Stored times beyond the year 9999 are not times (datetime cannot show them).
_LATEST_TIME = 253_402_300_799.0
_MAX_PID = 2**31 - 1


def default_cache_path() -> Path:
    """``$DEVICEAUTH_CACHE``, else ``$XDG_CACHE_HOME/deviceauth/.tokens.json`` (``~/.cache`` by default)."""
    if configured := os.environ.get(CACHE_ENV):
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deviceauth" / ".tokens.json"


def _empty() -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "identities": {}, "servers": {}}


class FileStore:
    """One cache file shared by every identity, process and thread that names it.

    Creating one does no file I/O.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, lock_timeout: float | None = None) -> None:
        self.path = Path(os.path.abspath(Path(path).expanduser() if path is not None else default_cache_path()))
        if "\0" in str(self.path):
            raise ValueError("the cache path contains a NUL character")
        if lock_timeout is not None and (
            isinstance(lock_timeout, bool)
            or not isinstance(lock_timeout, int | float)
            or not math.isfinite(lock_timeout)
            or lock_timeout < 0
        ):
            # NaN would never reach the deadline: every wait would be endless.
            raise ValueError(f"lock_timeout must be a finite number of seconds >= 0, not {lock_timeout!r}")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.login_marker_path = self.path.with_name(self.path.name + ".login")
        self.lock_timeout = DEFAULT_LOCK_TIMEOUT if lock_timeout is None else lock_timeout

    @property
    def location(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"FileStore({str(self.path)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FileStore, (str(self.path),), {"lock_timeout": self.lock_timeout})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.lock_timeout = state["lock_timeout"]

    # -- lock-free reads ------------------------------------------------------------------------

    def version(self) -> Hashable:
        """Changes whenever the file is replaced (every write is a new inode): a cheap "did it change?"."""
        try:
            st = os.stat(self.path)
        except (OSError, ValueError):
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read_all(self) -> dict[str, Any]:
        """The current contents without taking the lock; a missing or corrupt file reads as empty."""
        raw = self._read_bytes()
        try:
            return _empty() if raw is None else _parse(raw)
        except _Corrupt:
            return _empty()

    def read(self, identity: Identity) -> Token | None:
        return _token_of(self.read_all(), identity)

    def metadata(self, issuer: str) -> dict[str, Any] | None:
        return _metadata_of(self.read_all(), issuer)

    def records(self) -> Iterator[Record]:
        for entry in self.read_all()["identities"].values():
            record = _record_of(entry)
            if record is not None:
                yield record

    def login_in_progress(self) -> LoginInProgress | None:
        try:
            raw = _read_regular_file(self.login_marker_path, _MAX_MARKER_BYTES)
            marker = None if raw is None else LoginInProgress.from_json(json.loads(raw))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError, OverflowError):
            return None
        # pid 0 or -1 would make os.kill "succeed" (it signals a group), a huge one overflows it,
        # and a NaN expiry never passes: such a marker would hold every waiter for the longest wait.
        if marker is None or not 0 < marker.pid <= _MAX_PID or not math.isfinite(marker.expires_at):
            return None
        return marker

    def _read_bytes(self) -> bytes | None:
        """The file's bytes, or None when there is no file yet."""
        try:
            return _read_regular_file(self.path, MAX_CACHE_BYTES)
        except OSError as exc:
            raise CacheError(f"cannot read the token cache {self.path}: {_reason(exc)}", path=str(self.path)) from exc

    # -- locked changes -------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(
        self,
        identity: Identity,
        *,
        since: Hashable = None,
        usable: Callable[[Token], bool] | None = None,
        on_wait: Callable[[LoginInProgress], None] | None = None,
    ) -> Iterator[_FileTransaction | Written]:
        """Hold the cache lock and yield the contents as re-read under it.

        Waits at most ``lock_timeout`` seconds, except while another process is running a
        device login under the lock: then it waits until that login's code expires, and
        tells ``on_wait`` once where the login is happening. While waiting it watches the
        file; when the holder has written a token for ``identity`` that ``usable`` accepts,
        it yields ``Written(token)`` without taking the lock, so a herd of waiters does not
        queue for a lock none of them needs any more.
        """
        self._make_parent()
        lock = self._lock()
        watcher = _Watcher(self, identity, since, usable)
        written = self._acquire(lock, on_wait, watcher)
        if written is not None:
            yield written
            return
        try:
            yield _FileTransaction(self, identity, self._load_for_update())
        finally:
            lock.release()

    def forget(self, identity: Identity) -> Token | None:
        with self.transaction(identity) as txn:
            assert isinstance(txn, _FileTransaction)  # no `usable`: never handed a Written
            token = txn.token
            txn.delete(unless_changed_from=token.refresh_token if token else None)
            return token

    def _lock(self) -> filelock.FileLock:
        try:
            st = os.lstat(self.lock_path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise CacheError(f"cannot use the lock file {self.lock_path}: {_reason(exc)}", path=str(self.path)) from exc
        else:
            if not stat.S_ISREG(st.st_mode):
                raise CacheError(
                    f"the lock file {self.lock_path} is not a regular file; remove it", path=str(self.path)
                )
        import filelock  # only writers need it: `deviceauth token` with a fresh token never loads it

        return filelock.FileLock(self.lock_path, mode=0o600)

    def _acquire(
        self,
        lock: filelock.FileLock,
        on_wait: Callable[[LoginInProgress], None] | None,
        watcher: _Watcher,
    ) -> Written | None:
        from filelock import Timeout

        deadline = time.monotonic() + self.lock_timeout
        next_login_check = time.monotonic() + _LOGIN_CHECK_EVERY
        told = False
        wait = _FIRST_WAIT
        while True:
            try:
                lock.acquire(timeout=wait, poll_interval=wait / 2)
                return None
            except Timeout:
                pass
            except OSError as exc:
                raise CacheError(f"cannot take the lock {self.lock_path}: {_reason(exc)}", path=str(self.path)) from exc
            if (written := watcher.written()) is not None:
                return written
            wait = min(wait * 1.5, _LONGEST_WAIT)  # quick hand-over after a refresh, calm during a login
            if time.monotonic() >= next_login_check:
                next_login_check = time.monotonic() + _LOGIN_CHECK_EVERY
                login = self.login_in_progress()
                if login is not None and login.alive(time.time()):
                    if not told and on_wait is not None:
                        on_wait(login)
                    told = True
                    remaining = min(login.expires_at - time.time(), 24 * 3600.0)
                    deadline = max(deadline, time.monotonic() + remaining + _LONGEST_WAIT)
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"timed out after {self.lock_timeout:g} s waiting for the token cache lock {self.lock_path}; "
                    "another process holds it",
                    lock_file=str(self.lock_path),
                )

    def _make_parent(self) -> None:
        parent = self.path.parent
        try:
            if not parent.is_dir():
                parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = parent.stat().st_mode
        except OSError as exc:
            raise CacheError(
                f"cannot create the cache directory {parent}: {_reason(exc)}", path=str(self.path)
            ) from exc
        if mode & 0o022 and not mode & stat.S_ISVTX:
            _warn_once(
                f"the token cache directory {parent} is writable by other users, who could replace the cache; "
                f"run: chmod go-w {parent}"
            )

    def _load_for_update(self) -> dict[str, Any]:
        raw = self._read_bytes()
        if raw is None:
            return _empty()
        try:
            return _parse(raw)
        except _Corrupt:
            target = self._target()
            aside = target.with_name(
                f"{target.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns()}"
            )
            try:
                os.replace(target, aside)
            except OSError as exc:
                raise CacheError(
                    f"the token cache {self.path} is unreadable and cannot be moved aside: {_reason(exc)}",
                    path=str(self.path),
                ) from exc
            log.warning("the token cache %s was unreadable; moved it to %s and started a new one", self.path, aside)
            return _empty()

    def _target(self) -> Path:
        """The file to replace: the cache path itself, or what it links to (so the link stays)."""
        try:
            link = os.lstat(self.path)
            if not stat.S_ISLNK(link.st_mode):
                return self.path
            owner = os.stat(self.path.parent).st_uid
        except FileNotFoundError:
            return self.path
        except OSError as exc:
            raise CacheError(f"cannot use the token cache {self.path}: {_reason(exc)}", path=str(self.path)) from exc
        # Like the kernel's protected_symlinks: in a shared directory, a link planted by another
        # user must not aim our write (and the set-aside rename) at a file of their choosing.
        if link.st_uid not in (os.geteuid(), owner):
            raise CacheError(
                f"the token cache {self.path} is a symbolic link owned by another user; remove it",
                path=str(self.path),
            )
        return Path(os.path.realpath(self.path))

    def _write(self, data: dict[str, Any]) -> None:
        payload = json.dumps(data, indent=1, sort_keys=True).encode()
        target = self._target()
        self._remove_stray_temp_files(target)
        try:
            fd, temp = _mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".tmp")
        except OSError as exc:
            raise CacheError(f"cannot write the token cache {self.path}: {_reason(exc)}", path=str(self.path)) from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise CacheError(f"cannot write the token cache {self.path}: {_reason(exc)}", path=str(self.path)) from exc
        _fsync_directory(target.parent)

    def _remove_stray_temp_files(self, target: Path) -> None:
        # Only lock holders write temp files, and we hold the lock: any left over are from a crash.
        with contextlib.suppress(OSError):
            for stray in target.parent.glob(glob.escape(target.name) + ".*.tmp"):
                with contextlib.suppress(OSError):
                    stray.unlink()


class _FileTransaction:
    """The cache contents while the lock is held; every change replaces the file atomically."""

    def __init__(self, store: FileStore, identity: Identity, data: dict[str, Any]) -> None:
        self._store = store
        self._identity = identity
        self._data = data
        self.token = _token_of(data, identity)
        self.metadata = _metadata_of(data, identity.issuer)

    def put(self, token: Token, *, replacing: str | None, metadata: Mapping[str, Any] | None = None) -> None:
        current = _token_of(self._data, self._identity)
        if (current.refresh_token if current else None) != replacing:
            raise StaleWrite("the stored session changed under this transaction")
        identity = self._identity
        entry = {
            "issuer": identity.issuer,
            "client_id": identity.client_id,
            "scope": identity.scope,
            "token": token.to_json(),
        }
        data = {**self._data, "identities": {**self._data["identities"], identity.key: entry}}
        if metadata is not None:
            data["servers"] = {**self._data["servers"], identity.issuer: {"metadata": dict(metadata)}}
        # Changed only once written: after a failed write this transaction still holds what the
        # file holds, so the caller can retry the same put.
        self._store._write(data)
        self._data = data
        self.token = token

    def delete(self, *, unless_changed_from: str | None) -> bool:
        current = _token_of(self._data, self._identity)
        if self._identity.key not in self._data["identities"]:
            return False
        if current is not None and current.refresh_token != unless_changed_from:
            return False
        identities = {key: entry for key, entry in self._data["identities"].items() if key != self._identity.key}
        data = {**self._data, "identities": identities}
        self._store._write(data)
        self._data = data
        self.token = None
        return True

    @contextlib.contextmanager
    def login_marker(self, expires_at: float) -> Iterator[None]:
        path = self._store.login_marker_path
        payload = json.dumps(LoginInProgress.here(expires_at).to_json()).encode()
        # A fresh, unpredictable temp name (O_EXCL, no link followed), renamed into place, so
        # waiters never read half a marker and a planted symlink is never written through.
        temp = None
        try:
            fd, temp = _mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.replace(temp, path)
        except OSError as exc:
            log.warning("cannot advertise the login in progress at %s: %s", path, _reason(exc))
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()

    def keep_alive(self) -> None:
        """flock never expires while its holder lives."""


class _Watcher:
    """Between lock polls: has the holder written a token this waiter can use?"""

    def __init__(
        self, store: FileStore, identity: Identity, since: Hashable, usable: Callable[[Token], bool] | None
    ) -> None:
        self._store = store
        self._identity = identity
        self._seen = since
        self._usable = usable

    def written(self) -> Written | None:
        if self._usable is None or (current := self._store.version()) == self._seen:
            return None
        self._seen = current
        try:
            token = self._store.read(self._identity)
        except CacheError:
            return None
        return Written(token) if token is not None and self._usable(token) else None


def _mkstemp(*, dir: Path, prefix: str, suffix: str) -> tuple[int, str]:
    import tempfile  # writers only: a warm read never needs it

    return tempfile.mkstemp(dir=dir, prefix=prefix, suffix=suffix)


class _Corrupt(Exception):
    pass


def _read_regular_file(path: Path, limit: int) -> bytes | None:
    """The bytes of a regular file, None if absent; never blocks on a FIFO or reads a device."""
    try:
        # Opening a device can have effects of its own (a tape rewinds, a tty becomes ours):
        # look first, then check again on the open file in case it was swapped in between.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if st.st_size > limit:
            return b"\0"  # unparseable on purpose: too large to be ours
        chunks = []
        remaining = limit + 1
        while remaining > 0 and (chunk := os.read(fd, min(remaining, 1 << 16))):
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _parse(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_CACHE_BYTES:
        raise _Corrupt("too large")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _Corrupt(str(exc)) from None
    if not _shallow(data, _MAX_DEPTH):
        raise _Corrupt("nested too deeply")
    if not isinstance(data, dict) or not all(
        isinstance(data.get(part, {}), dict) for part in ("identities", "servers")
    ):
        raise _Corrupt("not a deviceauth token cache")
    version = data.setdefault("version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise CacheError(
            f"the token cache has format version {version!r:.20}, newer than this deviceauth understands; "
            "upgrade deviceauth or use another cache file"
        )
    data.setdefault("identities", {})
    data.setdefault("servers", {})
    return data


def _shallow(value: object, limit: int) -> bool:
    """Whether ``value`` nests at most ``limit`` containers deep (without recursing itself)."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return False
        pending.extend((child, depth + 1) for child in children)
    return True


def _token_of(data: dict[str, Any], identity: Identity) -> Token | None:
    entry = data["identities"].get(identity.key)
    record = _record_of(entry)
    return None if record is None else record.token


def _record_of(entry: object) -> Record | None:
    if not isinstance(entry, dict):
        return None
    try:
        identity = Identity(_str(entry["issuer"]), _str(entry["client_id"]), _optional_str(entry.get("scope")))
        token = Token.from_json(entry["token"])
        for moment in (token.expires_at, token.obtained_at, token.refresh_expires_at or 0.0):
            if not 0 <= moment <= _LATEST_TIME:
                raise ValueError("a stored time is out of range")
        return Record(identity, token)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        log.warning("ignoring a malformed entry in the token cache")
        return None


def _metadata_of(data: dict[str, Any], issuer: str) -> dict[str, Any] | None:
    server = data["servers"].get(issuer)
    if isinstance(server, dict) and isinstance(server.get("metadata"), dict):
        return dict(server["metadata"])
    return None


def _str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise TypeError("not a string")


def _optional_str(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError("not a string")


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
