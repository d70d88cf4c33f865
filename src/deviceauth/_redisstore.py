"""A token store in Redis, so that many hosts share one login and one refresh per expiry.

    {prefix}id:<h>        hash: data (the token blob: JSON, or Fernet-encrypted JSON)
                                rt   (sha256 of the stored refresh token, "" when there is none)
    {prefix}server:<h>    the issuer's discovery document (public, never encrypted)
    {prefix}lock:<h>      the identity's lock: a random owner token, SET NX PX, extended while held
    {prefix}login:<h>     a login in progress (LoginInProgress JSON), expiring with the lock
    {prefix}identities    set of every stored <h> (for ``records()``)
    {prefix}version       counter bumped by every write and delete (``version()``)
    {prefix}changed:<h>   pub/sub channel: a message after every write, delete and unlock

``<h>`` is a hash of the identity key (or issuer), so hostile identity strings never shape key
names. Every change is a Lua script, so it is atomic on the server:

- the lock is released and extended only by the owner token that took it (compare-and-delete,
  compare-and-pexpire), so a holder whose lock expired can never free or extend another's;
- ``put`` stores a token only if the stored refresh token is still the one this holder started
  from (compare-and-set). That is the fencing: a holder paused past its lock's expiry while
  another refreshed cannot overwrite the newer session. A retried script (reply lost on the
  network) finds its own write and succeeds instead of reporting a conflict.

Waiters subscribe to the identity's channel and sleep until a message or the lock's remaining
life (a dead holder's lock expires silently), so a herd wakes on the holder's write instead of
polling. Everything read from Redis is treated as hostile: wrong types, bad JSON and oversized
values are ignored entries; every Redis failure is a ``CacheError`` naming the store, never the
password, bounded by socket timeouts.

The scripts themselves are in ``_redisscripts``; what a store URL may say is in ``_redisurl``.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import redis
from redis.backoff import ConstantBackoff
from redis.retry import Retry

from . import _redisscripts as scripts
from . import _redisurl as urls
from ._exceptions import CacheError, LockTimeout
from ._settings import Identity
from ._store import LoginInProgress, Record, StaleWrite, Transaction, Written
from ._token import Token, fingerprint

__all__ = ["RedisStore"]

log = logging.getLogger("deviceauth.redis")

DEFAULT_PREFIX = "deviceauth:"
DEFAULT_LOCK_TIMEOUT = 30.0
# A holder extends its lock every third of this while it works; a dead holder blocks others this long.
DEFAULT_LOCK_TTL = 10.0
DEFAULT_SOCKET_TIMEOUT = 5.0
PASSWORD_ENV = "DEVICEAUTH_REDIS_PASSWORD"  # noqa: S105 (the name of a variable)
ENCRYPTION_KEY_ENV = "DEVICEAUTH_ENCRYPTION_KEY"
# Bigger than any real token blob or discovery document; a hostile value is not parsed.
MAX_VALUE_BYTES = 256 * 1024
MAX_RECORDS = 10_000
# A login marker claiming more than this is hostile or broken: waiters do not trust it further.
MAX_LOGIN_WAIT = 3600.0
# Without a subscription (it failed), waiters poll the lock at most this far apart.
_POLL_FIRST = 0.01
_POLL_LONGEST = 0.25
# With a subscription, a waiter still re-checks at least this often (a message can be lost on reconnect).
_SUBSCRIBED_LONGEST = 1.0


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _rt_digest(refresh_token: str | None) -> str:
    # Only a digest of the refresh token is stored in clear, for the compare-and-set script.
    return hashlib.sha256(refresh_token.encode()).hexdigest() if refresh_token else ""


class RedisStore:
    """Tokens in one Redis database under one key prefix, shared by every host that names it.

    ``client_or_url`` is a ``redis://``, ``rediss://`` or ``unix://`` URL, or a ``redis.Redis``
    client. The password may come from the URL, ``password=`` or ``$DEVICEAUTH_REDIS_PASSWORD``;
    ``encryption_key`` (a Fernet key, or ``$DEVICEAUTH_ENCRYPTION_KEY``) encrypts every stored token.
    """

    def __init__(
        self,
        client_or_url: redis.Redis | str,
        *,
        prefix: str | None = None,
        lock_timeout: float | None = None,
        lock_ttl: float | None = None,
        encryption_key: str | bytes | None = None,
        username: str | None = None,
        password: str | None = None,
        db: int | None = None,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        socket_timeout: float | None = None,
        allow_plaintext: bool | None = None,
    ) -> None:
        explicit = {
            "prefix": prefix,
            "lock_timeout": lock_timeout,
            "lock_ttl": lock_ttl,
            "encryption_key": encryption_key,
            "username": username,
            "password": password,
            "db": db,
            "ssl_ca_certs": ssl_ca_certs,
            "ssl_certfile": ssl_certfile,
            "ssl_keyfile": ssl_keyfile,
            "socket_timeout": socket_timeout,
            "allow_plaintext": allow_plaintext,
        }
        self._explicit = {name: value for name, value in explicit.items() if value is not None}
        if isinstance(client_or_url, str):
            self._url: str | None = client_or_url
            connect, url_options = urls.parse_url(client_or_url)
        elif isinstance(client_or_url, redis.Redis):
            self._url = None
            connect, url_options = urls.describe_client(client_or_url), {}
        else:
            raise TypeError(
                f"RedisStore needs a redis:// URL or a redis.Redis client, not {type(client_or_url).__name__}"
            )
        options = {**url_options, **self._explicit}
        self.prefix = str(options.get("prefix", DEFAULT_PREFIX))
        self.lock_timeout = _seconds("lock_timeout", options.get("lock_timeout", DEFAULT_LOCK_TIMEOUT), 0.0)
        self.lock_ttl = _seconds("lock_ttl", options.get("lock_ttl", DEFAULT_LOCK_TTL), 0.05)
        self.socket_timeout = _seconds("socket_timeout", options.get("socket_timeout", DEFAULT_SOCKET_TIMEOUT), 0.05)
        for name in ("username", "password", "db", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            if name in options:
                connect[name] = options[name]
        if "password" not in connect and os.environ.get(PASSWORD_ENV):
            connect["password"] = os.environ[PASSWORD_ENV]
        if isinstance(client_or_url, redis.Redis):
            connect.setdefault("password", client_or_url.connection_pool.connection_kwargs.get("password"))
        _refuse_plaintext_to_a_remote_host(connect, options.get("allow_plaintext"))
        self._secret = str(connect.get("password") or "")
        self.location = urls.location(connect, self.prefix)
        key = options.get("encryption_key") or os.environ.get(ENCRYPTION_KEY_ENV) or None
        self._fernet = _fernet(key, self.location) if key else None
        if isinstance(client_or_url, redis.Redis):
            self._client = client_or_url
        else:
            self._client = _shared_client(connect, self.socket_timeout, self._connect)
        self._scripts = {
            name: self._client.register_script(text)
            for name, text in (
                ("acquire", scripts.ACQUIRE),
                ("extend", scripts.EXTEND),
                ("release", scripts.RELEASE),
                ("clear_marker", scripts.CLEAR_MARKER),
                ("put", scripts.PUT),
                ("delete", scripts.DELETE),
                ("read", scripts.READ),
            )
        }

    @classmethod
    def from_url(cls, url: str, *, lock_timeout: float | None = None, **options: Any) -> RedisStore:
        return cls(url, lock_timeout=lock_timeout, **options)

    def _connect(self, connect: dict[str, Any]) -> redis.Redis:
        tls = connect.pop("tls", False)
        path = connect.pop("path", None)
        common: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_timeout,
            # One quick retry covers a pooled connection that died (Redis restarted); more would
            # only delay the typed error the caller needs.
            "retry": Retry(ConstantBackoff(0.05), 1),
            "health_check_interval": 30,
            **_NO_CLIENT_SETINFO,
        }
        if path is not None:
            return redis.Redis(unix_socket_path=path, db=connect.get("db", 0), **urls.credentials(connect), **common)
        tls_options: dict[str, Any] = {}
        if tls:
            tls_options = {
                "ssl": True,
                **{k: connect[k] for k in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile") if connect.get(k)},
            }
        return redis.Redis(
            host=connect.get("host", "localhost"),
            port=connect.get("port", 6379),
            db=connect.get("db", 0),
            **urls.credentials(connect),
            **tls_options,
            **common,
        )

    def __repr__(self) -> str:
        return f"RedisStore({self.location!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        if self._url is None:
            raise TypeError("a RedisStore built from a redis.Redis client cannot be pickled; build it from a URL")
        return (_reopen, (self._url, self._explicit))

    def close(self) -> None:
        """Close the connections (shared by every store of this process that names the same server)."""
        with _clients_lock:
            for key, client in list(_clients.items()):
                if client is self._client:
                    del _clients[key]
        self._client.close()

    # -- keys -----------------------------------------------------------------------------------

    def _keys(self, identity: Identity) -> _Keys:
        h = _hash(identity.key)
        p = self.prefix
        return _Keys(
            h, f"{p}id:{h}", f"{p}lock:{h}", f"{p}login:{h}", f"{p}changed:{h}", f"{p}server:{_hash(identity.issuer)}"
        )

    @property
    def _version_key(self) -> str:
        return f"{self.prefix}version"

    @property
    def _index_key(self) -> str:
        return f"{self.prefix}identities"

    # -- the protocol ---------------------------------------------------------------------------

    def version(self) -> Hashable:
        with self._errors("cannot be read"):
            value = self._client.get(self._version_key)
        return value if isinstance(value, bytes) and len(value) <= 32 else None

    def read(self, identity: Identity) -> Token | None:
        token, _ = self._read_token(self._keys(identity), identity)
        return token

    def metadata(self, issuer: str) -> dict[str, Any] | None:
        raw = self._run("read", [f"{self.prefix}server:{_hash(issuer)}"], ["", MAX_VALUE_BYTES], "cannot be read")
        value = raw[0] if isinstance(raw, list) and raw else None
        if not isinstance(value, bytes):
            return None
        try:
            doc = json.loads(value)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if isinstance(doc, dict) and doc.get("issuer") == issuer and isinstance(doc.get("metadata"), dict):
            metadata: dict[str, Any] = doc["metadata"]
            return metadata
        return None

    @contextlib.contextmanager
    def transaction(
        self,
        identity: Identity,
        *,
        since: Hashable = None,
        usable: Callable[[Token], bool] | None = None,
        on_wait: Callable[[LoginInProgress], None] | None = None,
    ) -> Iterator[Transaction | Written]:
        keys = self._keys(identity)
        owner = secrets.token_hex(16)
        written = self._acquire(identity, keys, owner, since=since, usable=usable, on_wait=on_wait)
        if written is not None:
            yield Written(written)
            return
        holding = _Holding(self, keys, owner)
        try:
            token, stored_rt = self._read_token(keys, identity)
            holding.start()
            yield _RedisTransaction(self, identity, keys, holding, token, stored_rt, self.metadata(identity.issuer))
        finally:
            holding.stop()
            try:
                self._run("release", [keys.lock], [owner, keys.channel], "cannot release the lock")
            except CacheError as exc:
                log.warning("%s; it expires by itself within %g s", exc.message, self.lock_ttl)

    def login_in_progress(self) -> LoginInProgress | None:
        now = time.time()
        with self._errors("cannot be read"):
            cursor: Any = 0
            for _ in range(100):  # bounded: a huge keyspace is scanned only so far
                cursor, found = self._client.scan(cursor, match=f"{self.prefix}login:*", count=500)
                for key in found:
                    reply = self._scripts["read"](keys=[key], args=["", 4096])  # strings only, capped
                    login = _marker(reply[0] if isinstance(reply, list) and reply else None)
                    if login is not None and login.alive(now):
                        return login
                if not cursor:
                    break
        return None

    def records(self) -> Iterator[Record]:
        with self._errors("cannot be read"):
            members = self._client.srandmember(self._index_key, MAX_RECORDS) or []
        for member in sorted(m for m in members if isinstance(m, bytes) and len(m) == 32):
            h = member.decode("ascii", "replace")
            keys = _Keys(h, f"{self.prefix}id:{h}", "", "", "", "")
            blob = self._read_blob(keys)
            if blob is None or blob[0] is None:
                continue
            record = self._decode(blob[0], None)
            if record is not None:
                yield record

    def forget(self, identity: Identity) -> Token | None:
        with self.transaction(identity) as held:
            assert isinstance(held, _RedisTransaction)  # no `usable`: never handed a Written
            token = held.token
            held.delete(unless_changed_from=token.refresh_token if token else None)
            return token

    # -- waiting for the lock -------------------------------------------------------------------

    def _acquire(
        self,
        identity: Identity,
        keys: _Keys,
        owner: str,
        *,
        since: Hashable,
        usable: Callable[[Token], bool] | None,
        on_wait: Callable[[LoginInProgress], None] | None,
    ) -> Token | None:
        """Take the lock (None) or return a usable token its holder wrote while we waited."""
        want = usable is not None
        seen = since if isinstance(since, bytes) else None
        while (attempt := self._try_lock(keys, owner, handoff=want, seen=seen)) is not None and not attempt.tried:
            if (token := self._handed_off(attempt, identity, usable)) is not None:
                return token  # written before we even subscribed: no need to
            seen = attempt.version
        if attempt is None:
            return None
        deadline = time.monotonic() + self.lock_timeout
        told = False
        subscription = self._subscribe(keys.channel)
        poll = _POLL_FIRST
        try:
            while True:
                # Subscribed first, then checked: a write between the two is seen by one or the other.
                attempt = self._try_lock(keys, owner, handoff=want, seen=seen)
                if attempt is None:
                    return None
                if not attempt.tried:  # the version moved: judge the entry, then try the lock at once
                    if (token := self._handed_off(attempt, identity, usable)) is not None:
                        return token
                    seen = attempt.version
                    continue
                login = attempt.login
                if login is not None and login.alive(time.time()):
                    if not told and on_wait is not None:
                        on_wait(login)
                    told = True
                    until = min(login.expires_at - time.time(), MAX_LOGIN_WAIT)
                    deadline = max(deadline, time.monotonic() + until + 1.0)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LockTimeout(
                        f"timed out after {self.lock_timeout:g} s waiting for the lock of {identity.key} "
                        f"in {self.location}; another process holds it",
                        lock_file=f"{self.location}lock:{keys.h}",
                    )
                # A dead holder's lock expires without a message: sleep no longer than its remaining life.
                lock_left = attempt.pttl / 1000 + 0.002 if attempt.pttl > 0 else _SUBSCRIBED_LONGEST
                if subscription is not None:
                    subscription = self._wait_message(subscription, min(remaining, lock_left, _SUBSCRIBED_LONGEST))
                else:
                    time.sleep(min(remaining, lock_left, poll))
                    poll = min(poll * 2, _POLL_LONGEST)
        finally:
            if subscription is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    subscription.close()

    def _handed_off(
        self, attempt: _Attempt, identity: Identity, usable: Callable[[Token], bool] | None
    ) -> Token | None:
        """The token in an attempt's reply, if ``usable`` takes it."""
        if usable is None or attempt.entry is None:
            return None
        try:
            record = self._decode(attempt.entry, identity)
        except CacheError:
            return None  # (a wrong key): the holder's re-read under the lock reports it
        return record.token if record is not None and usable(record.token) else None

    def _try_lock(
        self, keys: _Keys, owner: str, *, handoff: bool = False, seen: bytes | None = None
    ) -> _Attempt | None:
        """None when we took the lock; otherwise what a waiter needs to know, from one round trip."""
        reply = self._run(
            "acquire",
            [keys.lock, keys.login, keys.id, self._version_key],
            [owner, _ms(self.lock_ttl), MAX_VALUE_BYTES, "1" if handoff else "0", seen or b""],
            "cannot take the lock",
        )
        if isinstance(reply, list) and reply and reply[0] == 1:
            return None
        parts = list(reply) + [None] * 6 if isinstance(reply, list) else [None] * 6
        pttl = parts[1] if isinstance(parts[1], int) else -1
        version = parts[3] if isinstance(parts[3], bytes) and len(parts[3]) <= 32 else None
        entry = parts[4] if isinstance(parts[4], bytes) else None
        return _Attempt(pttl, _marker(parts[2]), version, entry, tried=parts[5] != 0)

    def _subscribe(self, channel: str) -> Any:
        """A subscription confirmed by the server (so no later publish can slip past it), or None."""
        pubsub = None
        try:
            pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
            pubsub.subscribe(channel)
            end = time.monotonic() + self.socket_timeout
            while time.monotonic() < end:
                reply = pubsub.get_message(timeout=max(end - time.monotonic(), 0.0))
                if isinstance(reply, dict) and reply.get("type") == "subscribe":
                    return pubsub
            raise redis.TimeoutError("no subscribe confirmation")
        except (redis.RedisError, OSError, ValueError) as exc:
            log.debug("cannot subscribe to %s (%s); polling the lock instead", channel, type(exc).__name__)
            if pubsub is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()
            return None

    def _wait_message(self, pubsub: Any, timeout: float) -> Any:
        """Sleep until a message on the channel or ``timeout``; None when the subscription broke."""
        end = time.monotonic() + max(timeout, 0.0)
        try:
            while True:
                message = pubsub.get_message(timeout=max(end - time.monotonic(), 0.0))
                if message is None or time.monotonic() >= end:
                    return pubsub
                if isinstance(message, dict) and message.get("type") == "message":
                    break
            for _ in range(1000):  # drain the backlog: one re-check covers them all
                if pubsub.get_message(timeout=0.0) is None:
                    break
            return pubsub
        except (redis.RedisError, OSError, ValueError) as exc:
            log.debug("the subscription broke (%s); polling the lock instead", type(exc).__name__)
            with contextlib.suppress(redis.RedisError, OSError):
                pubsub.close()
            return None

    # -- reading and writing blobs --------------------------------------------------------------

    def _read_blob(self, keys: _Keys) -> tuple[bytes | None, str] | None:
        reply = self._run("read", [keys.id], ["data", MAX_VALUE_BYTES], "cannot be read")
        if not isinstance(reply, list) or len(reply) < 2:
            return None
        stored_rt = reply[1].decode("utf-8", "replace") if isinstance(reply[1], bytes) else ""
        if reply[0] == b"toobig":
            log.warning("ignoring an oversized entry %s in %s", keys.id, self.location)
            return None, stored_rt
        return (reply[0] if isinstance(reply[0], bytes) else None), stored_rt

    def _read_token(self, keys: _Keys, identity: Identity) -> tuple[Token | None, str]:
        blob = self._read_blob(keys)
        if blob is None:
            return None, ""
        data, stored_rt = blob
        if data is None:
            return None, stored_rt
        record = self._decode(data, identity)
        return (record.token if record is not None else None), stored_rt

    def _decode(self, data: bytes, identity: Identity | None) -> Record | None:
        plain = self._decrypt(data)
        try:
            doc = json.loads(plain)
            who = doc["identity"]
            found = Identity(issuer=who["issuer"], client_id=who["client_id"], scope=who.get("scope"))
            if not all(isinstance(v, str) for v in (found.issuer, found.client_id)) or not isinstance(
                found.scope, str | None
            ):
                raise TypeError("identity fields")
            if identity is not None and found != identity:
                raise ValueError("another identity")
            token = _checked_token(doc["token"])
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError, RecursionError, OverflowError):
            log.warning("ignoring a malformed entry in %s", self.location)
            return None
        return Record(found, token)

    def _encode(self, identity: Identity, token: Token) -> bytes:
        doc = {
            "v": 1,
            "identity": {"issuer": identity.issuer, "client_id": identity.client_id, "scope": identity.scope},
            "token": token.to_json(),
        }
        plain = json.dumps(doc, separators=(",", ":")).encode()
        return self._fernet.encrypt(plain) if self._fernet is not None else plain

    def _decrypt(self, data: bytes) -> bytes:
        looks_encrypted = data.startswith(b"gAAAAA")
        if self._fernet is None:
            if looks_encrypted:
                raise CacheError(
                    f"the tokens in {self.location} are encrypted; pass encryption_key= (or set ${ENCRYPTION_KEY_ENV})",
                    path=self.location,
                )
            return data
        from cryptography.fernet import InvalidToken

        try:
            plain: bytes = self._fernet.decrypt(data)
            return plain
        except InvalidToken:
            what = "was encrypted with another key" if looks_encrypted else "is not encrypted"
            raise CacheError(
                f"a token in {self.location} {what}; check encryption_key (or ${ENCRYPTION_KEY_ENV})",
                path=self.location,
            ) from None

    # -- Redis calls ----------------------------------------------------------------------------

    def _run(self, script: str, keys: list[str], args: list[Any], what: str) -> Any:
        with self._errors(what):
            return self._scripts[script](keys=keys, args=args)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            self._fail(what, exc)
        except OSError as exc:  # a socket error redis-py did not wrap
            self._fail(what, exc)

    def _fail(self, what: str, exc: BaseException) -> NoReturn:
        detail = _explain(exc, self.socket_timeout)
        raw = str(exc)[:200]
        if self._secret:
            raw = raw.replace(self._secret, "***")
        raise CacheError(f"the token store {self.location} {what}: {detail} ({raw})", path=self.location) from exc


@dataclass(frozen=True, slots=True)
class _Attempt:
    """A failed try at the lock: its remaining life, the login marker, the version and the entry."""

    pttl: int
    login: LoginInProgress | None
    version: bytes | None
    entry: bytes | None
    tried: bool  # False: the version moved, so the lock was not tried; judge the entry first


class _Keys:
    __slots__ = ("channel", "h", "id", "lock", "login", "server")

    def __init__(self, h: str, id_: str, lock: str, login: str, channel: str, server: str) -> None:
        self.h, self.id, self.lock, self.login, self.channel, self.server = h, id_, lock, login, channel, server


class _Holding:
    """The lock while held: extends it (and our login marker) in the background, notices losing it."""

    def __init__(self, store: RedisStore, keys: _Keys, owner: str) -> None:
        self.store, self.keys, self.owner = store, keys, owner
        self.marker = ""  # our login marker's exact value, while one is shown
        self.marker_expires_at = 0.0
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="deviceauth-redis-lock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.store.socket_timeout * 2 + 1)

    def _run(self) -> None:
        while not self._stop.wait(self.store.lock_ttl / 3):
            try:
                if not self.extend():
                    log.warning("lost the lock on %s (expired while paused?)", self.keys.id)
                    return
            except CacheError as exc:
                log.warning("%s; trying again", exc.message)

    def extend(self) -> bool:
        login_ms = 0
        if self.marker:
            login_ms = max(1, min(_ms(self.store.lock_ttl), _ms(self.marker_expires_at - time.time())))
        reply = self.store._run(
            "extend",
            [self.keys.lock, self.keys.login],
            [self.owner, _ms(self.store.lock_ttl), self.marker, login_ms],
            "cannot extend the lock",
        )
        if reply != 1:
            self.lost = True
        return bool(reply == 1)


class _RedisTransaction:
    """One identity as re-read under its Redis lock."""

    def __init__(
        self,
        store: RedisStore,
        identity: Identity,
        keys: _Keys,
        holding: _Holding,
        token: Token | None,
        stored_rt: str,
        metadata: dict[str, Any] | None,
    ) -> None:
        self._store, self._identity, self._keys, self._holding = store, identity, keys, holding
        self._token, self._stored_rt, self._metadata = token, stored_rt, metadata

    @property
    def token(self) -> Token | None:
        return self._token

    @property
    def metadata(self) -> dict[str, Any] | None:
        return self._metadata

    def _expected(self, refresh_token: str | None) -> str:
        # Replacing what we read under the lock (even an unreadable entry) means "unchanged since then".
        read = self._token.refresh_token if self._token is not None else None
        return self._stored_rt if refresh_token == read else _rt_digest(refresh_token)

    def put(self, token: Token, *, replacing: str | None, metadata: Mapping[str, Any] | None = None) -> None:
        store, keys = self._store, self._keys
        server = json.dumps({"issuer": self._identity.issuer, "metadata": dict(metadata)}) if metadata else ""
        new_rt = _rt_digest(token.refresh_token)
        reply = store._run(
            "put",
            [keys.id, store._version_key, store._index_key, keys.server],
            [self._expected(replacing), new_rt, store._encode(self._identity, token), keys.channel, keys.h, server],
            "cannot be written",
        )
        if reply != 1:
            log.warning(
                "refused to store token %s for %s: another process changed the session meanwhile",
                fingerprint(token.access_token),
                self._identity.key,
            )
            raise StaleWrite(f"the session of {self._identity.key} changed in {store.location}")
        self._token, self._stored_rt = token, new_rt
        if metadata:
            self._metadata = dict(metadata)

    def delete(self, *, unless_changed_from: str | None) -> bool:
        store, keys = self._store, self._keys
        expected = self._expected(unless_changed_from)
        reply = store._run(
            "delete",
            [keys.id, store._version_key, store._index_key],
            [expected, keys.channel, keys.h],
            "cannot be written",
        )
        if reply == 1:
            self._token, self._stored_rt = None, ""
        return bool(reply == 1)

    @contextlib.contextmanager
    def login_marker(self, expires_at: float) -> Iterator[None]:
        store, holding = self._store, self._holding
        marker = json.dumps(LoginInProgress.here(expires_at).to_json())
        ttl = max(1, min(_ms(store.lock_ttl), _ms(expires_at - time.time())))
        with store._errors("cannot be written"):
            store._client.set(self._keys.login, marker, px=ttl)
        holding.marker, holding.marker_expires_at = marker, expires_at
        try:
            yield
        finally:
            holding.marker = ""
            try:
                store._run("clear_marker", [self._keys.login], [marker], "cannot be written")
            except CacheError as exc:
                log.warning("%s; the login marker expires by itself", exc.message)

    def keep_alive(self) -> None:
        """Extend the lock now; if it expired meanwhile, take it back unless someone changed the session."""
        holding = self._holding
        if holding.extend():
            return
        store, keys = self._store, self._keys
        if store._try_lock(keys, holding.owner) is None:
            blob = store._read_blob(keys)
            if (blob[1] if blob is not None else "") == self._stored_rt:
                holding.lost = False
                holding.start()
                log.info("re-took the expired lock on %s; nothing changed meanwhile", keys.id)
                return
            store._run("release", [keys.lock], [holding.owner, keys.channel], "cannot release the lock")
        raise StaleWrite(f"lost the lock of {self._identity.key} in {store.location}")


# -- helpers ------------------------------------------------------------------------------------


# CLIENT SETINFO costs two round trips per new connection (every fresh worker pays them); its
# switch moved from lib_name/lib_version (redis-py 5) to driver_info (8, which warns on the old one).
_NO_CLIENT_SETINFO: dict[str, Any] = (
    {"driver_info": None}
    if "driver_info" in inspect.signature(redis.Redis.__init__).parameters
    else {"lib_name": None, "lib_version": None}
)

# One client (one connection pool) per server and credentials per process: every DeviceAuth
# naming the same Redis shares its connections, and they live as long as the process (a store
# dropped in a reference cycle would otherwise leave its sockets to the garbage collector).
_clients: dict[tuple[Any, ...], redis.Redis] = {}
_clients_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # Another thread may have held the lock at fork time; redis-py's pools reset themselves.
    global _clients_lock
    _clients_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _shared_client(
    connect: dict[str, Any], socket_timeout: float, make: Callable[[dict[str, Any]], redis.Redis]
) -> redis.Redis:
    secret = hashlib.sha256(str(connect.get("password") or "").encode()).hexdigest()
    key = (tuple(sorted((k, str(v)) for k, v in connect.items() if k != "password")), secret, socket_timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = make(dict(connect))
        return client


def _reopen(url: str, options: dict[str, Any]) -> RedisStore:
    return RedisStore(url, **options)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _seconds(name: str, value: Any, minimum: float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds") from None
    if not math.isfinite(seconds) or seconds < minimum:
        raise ValueError(f"{name} must be a finite number of seconds >= {minimum:g}")
    return seconds


def _fernet(key: str | bytes, location: str) -> Any:
    from cryptography.fernet import Fernet

    try:
        return Fernet(key)
    except (ValueError, TypeError):
        raise ValueError(
            "encryption_key must be a Fernet key (32 url-safe base64-encoded bytes, e.g. from "
            "cryptography.fernet.Fernet.generate_key())"
        ) from None


def _marker(raw: Any) -> LoginInProgress | None:
    if not isinstance(raw, bytes) or len(raw) > 4096:
        return None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            return None
        login = LoginInProgress.from_json(data)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError, OverflowError):
        return None
    return login if math.isfinite(login.expires_at) else None


def _checked_token(data: Any) -> Token:
    if not isinstance(data, dict):
        raise TypeError("token")
    if not isinstance(data.get("access_token"), str) or not data["access_token"]:
        raise TypeError("access_token")
    for name in ("refresh_token", "id_token", "scope", "token_type"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise TypeError(name)
    for name in ("expires_at", "obtained_at", "refresh_expires_at"):
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise TypeError(name)
        if value is not None and not math.isfinite(value):
            raise ValueError(name)
    return Token.from_json(data)


def _explain(exc: BaseException, socket_timeout: float) -> str:
    if isinstance(exc, redis.AuthenticationError):
        return "Redis refused the username or password"
    if isinstance(exc, redis.exceptions.NoPermissionError | redis.exceptions.AuthorizationError):
        return "the Redis user lacks a permission deviceauth needs (see the README's ACL line)"
    text = str(exc).lower()
    if "certificate" in text or "ssl" in text or "tls" in text:
        return (
            "the TLS handshake with Redis failed (for a private CA, pass ssl_ca_certs=... in the URL or as a keyword)"
        )
    if isinstance(exc, redis.TimeoutError):
        return f"Redis did not answer within {socket_timeout:g} s"
    if isinstance(exc, redis.ConnectionError | OSError):
        return "cannot reach Redis (is it running, and is the address right?)"
    if isinstance(exc, redis.ReadOnlyError):
        return "this Redis is a read-only replica; point deviceauth at the primary"
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return "Redis is out of memory (maxmemory reached)"
    return "Redis answered with an error"


def _refuse_plaintext_to_a_remote_host(connect: dict[str, Any], allowed: object) -> None:
    """Tokens and the password cross the network as they are over plain redis://: only to loopback.

    A private network the user vouches for can say so with ``allow_plaintext`` (``?allow_plaintext=1``).
    """
    if connect.get("tls") or "path" in connect or str(allowed).lower() in ("1", "true", "yes"):
        return
    from ._transport import is_loopback

    host = str(connect.get("host", "localhost"))
    if not is_loopback(host.strip("[]").lower()):
        raise ValueError(
            f"refusing a plain redis:// store on {host}, a remote host: tokens would cross the network in clear; "
            "use rediss:// (TLS), or add ?allow_plaintext=1 for a network you trust"
        )
