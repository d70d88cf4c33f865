"""The token engine: the one place that decides where the next access token comes from.

    memory (fresh?) ─no─► cache file, unlocked (fresh?) ─no─► lock ► re-read (fresh?) ─no─►
        refresh with the refresh token read under the lock ─rejected─► compare-and-clear ► device login
        ► atomic write ► unlock

Every adapter (requests, httpx, urllib3, ``get_token()``) asks ``TokenEngine.access_token()``.
The warm path reads the clock and two attributes; nothing else. One ``_Identity`` per
(process, cache file, issuer, client, scope, leeway) holds the in-memory token, so every
object and adapter for that identity in a process shares it, and a ``threading.Lock`` makes
threads single-flight before the file lock makes processes single-flight.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from ._cache import LockedCache, LoginInProgress, TokenCache
from ._discovery import discover
from ._exceptions import DiscoveryError, LoginRequired, ServerError, TokenRejected
from ._flow import DeviceCode, run_device_flow
from ._oauth import OAuthClient
from ._prompt import is_interactive, make_prompt
from ._token import Token, fingerprint

__all__ = ["Settings", "TokenEngine", "identity_key"]

log = logging.getLogger("deviceauth")


def normalize_scope(scope: str | list[str] | tuple[str, ...] | None) -> str | None:
    if scope is None:
        return None
    parts = scope.split() if isinstance(scope, str) else list(scope)
    return " ".join(sorted(set(parts))) or None


def identity_key(issuer: str, client_id: str, scope: str | None) -> str:
    return f"{issuer.rstrip('/')} {client_id} {scope or ''}".rstrip()


@dataclass(frozen=True)
class Settings:
    """Everything that defines an identity and how to reach its server; pickles as plain data."""

    issuer: str
    client_id: str
    scope: str | None = None
    cache_path: Path | None = None
    client_secret: str | None = field(default=None, repr=False)
    token_endpoint_auth_method: str | None = None
    leeway: float | None = None
    timeout: float = 30.0
    lock_timeout: float | None = None
    verify: bool | str = True
    endpoints: tuple[tuple[str, str], ...] = ()
    offline_token: str | None = field(default=None, repr=False)
    store_offline_token: bool = False

    def __post_init__(self) -> None:
        # One spelling of the issuer everywhere it is a key (cache entries, server metadata).
        object.__setattr__(self, "issuer", self.issuer.rstrip("/"))

    @property
    def key(self) -> str:
        return identity_key(self.issuer, self.client_id, self.scope)


@dataclass(frozen=True)
class Interaction:
    """How this caller may reach a person when a login is needed."""

    interactive: bool | None = None  # None: decide when a login is needed (TTY or Jupyter)
    prompt: Callable[[DeviceCode], None] | None = None
    open_browser: bool | None = None


class _Identity:
    """The in-memory state one process keeps for one identity."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token: Token | None = None
        self.access_token = ""
        self.due = 0.0  # when the access token stops being served from memory
        self.metadata: dict[str, Any] | None = None
        self.clients: dict[tuple[Any, ...], OAuthClient] = {}  # one per distinct client configuration
        self.offline_token: str | None = None  # the latest one, if the server rotated it

    def forget_process_resources(self) -> None:
        # A forked child inherits this object: a lock another thread may have held at fork time,
        # and an HTTP session whose sockets the parent still uses. The token itself stays valid.
        self.lock = threading.Lock()
        self.clients = {}


_registry: dict[tuple[Any, ...], _Identity] = {}
_registry_lock = threading.Lock()


def _identity_for(settings: Settings, cache: TokenCache) -> _Identity:
    key = (str(cache.path.resolve()), settings.key, settings.leeway)
    with _registry_lock:
        identity = _registry.get(key)
        if identity is None:
            identity = _registry[key] = _Identity()
        return identity


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for identity in _registry.values():
        identity.forget_process_resources()


os.register_at_fork(after_in_child=_after_fork_in_child)


class TokenEngine:
    def __init__(
        self, settings: Settings, *, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.settings = settings
        self.cache = TokenCache(settings.cache_path, lock_timeout=settings.lock_timeout)
        self._clock = clock
        self._sleep = sleep
        self._state = _identity_for(settings, self.cache)

    # -- the hot path -------------------------------------------------------------------------

    def access_token(self, interaction: Interaction) -> str:
        state = self._state
        if self._clock() < state.due:
            return state.access_token
        return self._obtain(interaction, rejected=None)

    def fresh_token(self) -> str | None:
        """The in-memory token if it is fresh, else None; never blocks (for event loops)."""
        state = self._state
        return state.access_token if self._clock() < state.due else None

    def replace_rejected(self, rejected: str, interaction: Interaction) -> str:
        """A token the API answered 401 to: return a different one, refreshing if needed."""
        return self._obtain(interaction, rejected=rejected)

    # -- the slow path ------------------------------------------------------------------------

    def _usable(self, token: Token | None, rejected: str | None) -> TypeGuard[Token]:
        if token is None or token.access_token == rejected:
            return False
        return self._clock() < token.refresh_due_at(self.settings.leeway)

    def _obtain(self, interaction: Interaction, rejected: str | None) -> str:
        state = self._state
        with state.lock:
            if self._usable(state.token, rejected):
                return state.token.access_token
            stamp = self.cache.stamp()
            entry = self._entry(self.cache.read())
            if self._usable(entry, rejected):
                return self._adopt(entry, "cache")
            written: list[Token] = []

            def written_meanwhile() -> bool:
                # Another process wrote a usable token while we waited: take it, skip the lock.
                nonlocal stamp
                if (current := self.cache.stamp()) == stamp:
                    return False
                stamp = current
                entry = self._entry(self.cache.read())
                if self._usable(entry, rejected):
                    written.append(entry)
                return bool(written)

            with self.cache.locked(on_wait=_tell_waiting, stop_waiting=written_meanwhile) as locked:
                if locked is None:
                    return self._adopt(written[0], "cache")
                self._remember_metadata(locked.data)
                entry = self._entry(locked.data)
                if self._usable(entry, rejected):
                    return self._adopt(entry, "cache")
                token = self._refresh(locked, entry) if entry is not None else None
                if token is None:
                    token = self._redeem_offline_token(locked)
                if token is None:
                    token = self._login(locked, interaction)
                return self._adopt(token, "server")

    def _adopt(self, token: Token, source: str) -> str:
        state = self._state
        state.token = token
        state.access_token = token.access_token
        state.due = token.refresh_due_at(self.settings.leeway)
        log.debug(
            "using access token %s from %s, valid %.0f s more",
            fingerprint(token.access_token),
            source,
            token.expires_at - self._clock(),
        )
        return token.access_token

    def _remember_metadata(self, data: dict[str, Any]) -> None:
        """Take the issuer's discovery document from the cache, so a new process skips discovery."""
        if self._state.metadata is None:
            server = data["servers"].get(self.settings.issuer)
            if isinstance(server, dict) and isinstance(server.get("metadata"), dict):
                self._state.metadata = server["metadata"]

    def _entry(self, data: dict[str, Any]) -> Token | None:
        entry = data["identities"].get(self.settings.key)
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), dict):
            return None
        try:
            return Token.from_json(entry["token"])
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed cache entry for %s", self.settings.key)
            return None

    def _refresh(self, locked: LockedCache, entry: Token) -> Token | None:
        """Refresh with the refresh token read under the lock; None when a login is needed."""
        if not entry.can_refresh(self._clock()):
            return None
        assert entry.refresh_token is not None
        endpoint = self._endpoint("token_endpoint")
        log.debug("refreshing with refresh token %s", fingerprint(entry.refresh_token))
        try:
            response = self._client().refresh(endpoint, entry.refresh_token)
        except TokenRejected:
            self._clear_if_unchanged(locked, entry.refresh_token)
            return None
        token = Token.from_response(response, self._clock(), previous=entry)
        self._store(locked, token)
        log.info("refreshed the access token for %s", self.settings.key)
        return token

    def _redeem_offline_token(self, locked: LockedCache) -> Token | None:
        """Use the caller's offline token; only the access token it yields goes to the cache, unless asked."""
        offline = self._state.offline_token or self.settings.offline_token
        if not offline:
            return None
        try:
            response = self._client().refresh(self._endpoint("token_endpoint"), offline)
        except TokenRejected as exc:
            raise LoginRequired(
                f"the server rejected the offline token for {self.settings.client_id} at {self.settings.issuer} "
                "(expired, revoked or already used); issue a new one",
                issuer=self.settings.issuer,
                client_id=self.settings.client_id,
            ) from exc
        token = Token.from_response(response, self._clock())
        if token.refresh_token:
            self._state.offline_token = token.refresh_token
        self._store(locked, token if self.settings.store_offline_token else token.without_refresh_token())
        log.info("redeemed the offline token for %s", self.settings.key)
        return token

    def _clear_if_unchanged(self, locked: LockedCache, failed_refresh_token: str) -> None:
        current = self._entry(locked.data)
        if current is not None and current.refresh_token == failed_refresh_token:
            del locked.data["identities"][self.settings.key]
            locked.save()
            log.info("the server rejected the stored refresh token for %s; cleared it", self.settings.key)

    def _login(self, locked: LockedCache, interaction: Interaction) -> Token:
        interactive = is_interactive() if interaction.interactive is None else interaction.interactive
        if not interactive:
            raise LoginRequired(self._login_hint(), issuer=self.settings.issuer, client_id=self.settings.client_id)
        device_endpoint = self._endpoint("device_authorization_endpoint")
        token_endpoint = self._endpoint("token_endpoint")
        with contextlib.ExitStack() as marker:
            response = run_device_flow(
                self._client(),
                device_endpoint,
                token_endpoint,
                self.settings.scope,
                show=make_prompt(interaction.prompt, interaction.open_browser),
                clock=self._clock,
                sleep=self._sleep,
                on_started=lambda code: marker.enter_context(locked.login_marker(code.expires_at)),
            )
        token = Token.from_response(response, self._clock())
        self._store(locked, token)
        log.info("logged in to %s as client %s", self.settings.issuer, self.settings.client_id)
        return token

    def _store(self, locked: LockedCache, token: Token) -> None:
        settings = self.settings
        locked.data["identities"][settings.key] = {
            "issuer": settings.issuer,
            "client_id": settings.client_id,
            "scope": settings.scope,
            "token": token.to_json(),
        }
        if self._state.metadata is not None:
            locked.data["servers"][settings.issuer] = {"metadata": self._state.metadata}
        locked.save()

    # -- explicit operations ------------------------------------------------------------------

    def login(self, interaction: Interaction) -> Token:
        """Run a device login now, whatever the cache holds."""
        with self._state.lock, self.cache.locked(on_wait=_tell_waiting) as locked:
            assert locked is not None  # only a stop_waiting callback ends the wait early
            self._remember_metadata(locked.data)
            token = self._login(locked, Interaction(True, interaction.prompt, interaction.open_browser))
            self._adopt(token, "server")
            return token

    def logout(self, *, revoke: bool = True) -> bool:
        """Forget this identity's tokens here and, where the server allows, at the server."""
        state = self._state
        with state.lock, self.cache.locked() as locked:
            assert locked is not None
            self._remember_metadata(locked.data)
            entry = self._entry(locked.data)
            state.token, state.access_token, state.due = None, "", 0.0
            if entry is None:
                return False
            del locked.data["identities"][self.settings.key]
            locked.save()
        if revoke:
            self._revoke(entry)
        return True

    def cached_token(self) -> Token | None:
        return self._entry(self.cache.read())

    def _revoke(self, entry: Token) -> None:
        try:
            endpoint = self._metadata().get("revocation_endpoint")
            if not endpoint:
                return
            client = self._client()
            if entry.refresh_token:
                client.revoke(endpoint, entry.refresh_token, "refresh_token")
            client.revoke(endpoint, entry.access_token, "access_token")
        except ServerError as exc:
            log.warning("could not revoke the tokens at the server: %s", exc)

    # -- server details -----------------------------------------------------------------------

    def _client(self) -> OAuthClient:
        s = self.settings
        options = (s.client_secret, s.token_endpoint_auth_method, s.timeout, s.verify)
        client = self._state.clients.get(options)
        if client is None:
            client = self._state.clients[options] = OAuthClient(
                s.client_id,
                client_secret=s.client_secret,
                token_endpoint_auth_method=s.token_endpoint_auth_method,
                timeout=s.timeout,
                verify=s.verify,
            )
        return client

    def _metadata(self) -> dict[str, Any]:
        state = self._state
        overrides = dict(self.settings.endpoints)
        if state.metadata is None and not {"token_endpoint", "device_authorization_endpoint"} <= overrides.keys():
            state.metadata = discover(self._client().get, self.settings.issuer)
        return {**(state.metadata or {}), **overrides}

    def _endpoint(self, name: str) -> str:
        url = self._metadata().get(name)
        if not url:
            hint = (
                " (in Keycloak, enable 'OAuth 2.0 Device Authorization Grant' on the client)"
                if name == "device_authorization_endpoint"
                else ""
            )
            raise DiscoveryError(
                f"{self.settings.issuer} does not advertise a {name}{hint}; pass {name}=... to use a known URL"
            )
        return str(url)

    def _login_hint(self) -> str:
        s = self.settings
        command = f"deviceauth login --issuer {s.issuer} --client-id {s.client_id}"
        if s.scope:
            command += f" --scope '{s.scope}'"
        if s.cache_path is not None:
            command += f" --cache {s.cache_path}"
        return f"no valid token for {s.client_id} at {s.issuer} and no one to ask; run: {command}"


def _tell_waiting(login: LoginInProgress) -> None:
    log.warning("waiting for a login in progress in process %d on %s", login.pid, login.host)
