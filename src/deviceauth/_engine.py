"""The token policy: the one place that decides where the next access token comes from.

    memory fresh? ──yes──► use it                                 (the warm path: a clock read)
      │no
    store, lock-free: a usable token? ──yes──► adopt it
      │no
    store.transaction ──"the holder wrote one we can use"──► adopt it (no lock taken)
      │ lock held, store re-read
    usable now? ──yes──► adopt it
      │no
    refresh with the refresh token read under the lock ──► write ──► adopt
      │rejected: delete the entry unless it changed, then
    offline token (if configured) ──► write the access token ──► adopt
      │none
    device login (or LoginRequired where nobody can answer) ──► write ──► adopt

Every adapter asks through ``TokenSource`` (``DeviceAuth`` implements it) and ends here. One
``ProcessState`` per (store, identity) holds the in-memory token, so every object and
adapter for that identity in a process shares it; its thread lock makes threads single-flight
before the store's lock makes processes (and hosts) single-flight.

Two failures never lose a session: when the store cannot take a new token (disk full, Redis
down) the token stays in memory, is served and refreshed from there, and is written as soon as
the store works again; and when a refresh fails for a transient reason while the current access
token is still valid, that token keeps being served and the refresh is retried with backoff.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeGuard

from ._exceptions import CacheError, LoginRequired, ServerError, TokenRejected
from ._process import state_for
from ._server import ServerSide
from ._settings import Interaction, Settings
from ._store import LoginInProgress, StaleWrite, TokenStore, Transaction, Written
from ._token import Token, fingerprint

__all__ = ["TokenEngine"]

log = logging.getLogger("deviceauth")

# After a transient refresh failure with a still-valid access token: retry after 1, 2, 4 ... s.
_FIRST_RETRY = 1.0
_LONGEST_RETRY = 30.0


class TokenEngine:
    """Access tokens for one identity in one store, from memory, the store, a refresh or a login.

    :param settings: the identity and how to reach its server.
    :param store: where tokens are shared (``FileStore``, ``RedisStore`` or your own ``TokenStore``).
    :param clock: wall-clock seconds (tests inject a fake one); ``sleep`` waits between polls.
    """

    def __init__(
        self,
        settings: Settings,
        store: TokenStore,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.store = store
        self._identity = settings.identity
        self._clock = clock
        self._sleep = sleep
        self._state = state_for(store.location, settings.key, settings.leeway)
        self.server = ServerSide(settings, self._state)
        self._retry_after = _FIRST_RETRY

    # -- the hot path -------------------------------------------------------------------------

    def access_token(self, interaction: Interaction) -> str:
        state = self._state
        if self._clock() < state.due:
            return state.access_token
        return self._obtain(interaction, rejected=None)

    def authorization(self, interaction: Interaction) -> str:
        """``access_token`` as an ``Authorization`` header value, prebuilt on the warm path."""
        state = self._state
        if self._clock() < state.due:
            return state.header
        return "Bearer " + self._obtain(interaction, rejected=None)

    def fresh_token(self) -> str | None:
        """The in-memory token if it is fresh, else None; never blocks (for event loops)."""
        state = self._state
        return state.access_token if self._clock() < state.due else None

    def replace_rejected(self, rejected: str | None, interaction: Interaction) -> str:
        """A token the API answered 401 to: return a different one, refreshing if needed."""
        return self._obtain(interaction, rejected=rejected)

    # -- the slow path ------------------------------------------------------------------------

    def _usable(self, token: Token | None, rejected: str | None) -> TypeGuard[Token]:
        if token is None or (rejected is not None and token.access_token == rejected):
            return False
        return self._clock() < self._state.due_of(token)

    def _obtain(self, interaction: Interaction, rejected: str | None) -> str:
        state = self._state
        with state.lock:
            if self._usable(state.token, rejected) and self._clock() < state.due:
                return state.token.access_token
            try:
                return self._through_the_store(interaction, rejected)
            except CacheError as exc:
                # The store is down (Redis restarting, a disk gone read-only): a token still
                # valid in memory keeps the calls going; the store is tried again shortly.
                current = state.token
                if current is None or current.access_token == rejected or self._clock() >= current.expires_at:
                    raise
                return self._serve_meanwhile(current, exc)

    def _through_the_store(self, interaction: Interaction, rejected: str | None) -> str:
        since = self.store.version()
        if self._state.unsaved is None:
            stored = self.store.read(self._identity)
            if self._usable(stored, rejected):
                return self._adopt(stored, "the store")
        with self.store.transaction(
            self._identity, since=since, usable=lambda token: self._usable(token, rejected), on_wait=_tell_waiting
        ) as txn:
            if isinstance(txn, Written):
                return self._adopt(txn.token, "the store")
            return self._decide(txn, interaction, rejected)

    def _decide(self, txn: Transaction, interaction: Interaction, rejected: str | None) -> str:
        """Under the store's lock: the newest token we know, or a refreshed one, or a login."""
        self.server.remember(txn.metadata)
        current = self._newest(txn)
        if self._usable(current, rejected):
            return self._adopt(current, "the store")
        if current is not None and current.can_refresh(self._clock()):
            try:
                token = self._refresh(txn, current)
            except ServerError as exc:
                if exc.transient and current.access_token != rejected and self._clock() < current.expires_at:
                    return self._serve_meanwhile(current, exc)
                raise
            if token is not None:
                return self._adopt(token, "the server")
        token = self._redeem_offline_token(txn) or self._login(txn, interaction)
        return self._adopt(token, "the server")

    def _newest(self, txn: Transaction) -> Token | None:
        """The store's token, or ours if the store missed our last write and nobody wrote since."""
        state = self._state
        stored = txn.token
        if state.unsaved is None:
            return stored
        if (stored.refresh_token if stored else None) != state.store_had:
            log.info("another process wrote a newer session for %s; dropping the unsaved one", self.settings.key)
            state.unsaved = state.store_had = None
            return stored
        unsaved = state.unsaved
        self._put(txn, unsaved)  # the store may work again now
        return unsaved

    def _refresh(self, txn: Transaction, current: Token) -> Token | None:
        """Refresh with the newest refresh token; None when the server says a login is needed."""
        assert current.refresh_token is not None
        log.debug("refreshing with refresh token %s", fingerprint(current.refresh_token))
        try:
            response = self.server.refresh(current.refresh_token)
        except TokenRejected:
            self._state.unsaved = self._state.store_had = None
            if txn.delete(unless_changed_from=current.refresh_token):
                log.info("the server rejected the stored refresh token for %s; cleared it", self.settings.key)
            return None
        self._retry_after = _FIRST_RETRY
        token = self._token_from(response, previous=current)
        self._put(txn, token)
        log.info("refreshed the access token for %s", self.settings.key)
        return token

    def _serve_meanwhile(self, current: Token, exc: ServerError | CacheError) -> str:
        """A transient failure while the access token still works: use it, and retry later."""
        retry_at = min(self._clock() + self._retry_after, current.expires_at)
        log.warning(
            "getting a new token failed (%s); using the current access token, valid %.0f s more; retrying in %.0f s",
            exc,
            current.expires_at - self._clock(),
            retry_at - self._clock(),
        )
        self._retry_after = min(self._retry_after * 2, _LONGEST_RETRY)
        self._adopt(current, "the store")
        self._state.due = retry_at
        return current.access_token

    def _redeem_offline_token(self, txn: Transaction) -> Token | None:
        """Use the caller's offline token; only the access token it yields is stored, unless asked."""
        offline = self._state.offline_token or self.settings.offline_token
        if not offline:
            return None
        try:
            response = self.server.refresh(offline)
        except TokenRejected as exc:
            raise LoginRequired(
                f"the server rejected the offline token for {self.settings.client_id} at {self.settings.issuer} "
                "(expired, revoked or already used); issue a new one",
                issuer=self.settings.issuer,
                client_id=self.settings.client_id,
            ) from exc
        token = self._token_from(response)
        if token.refresh_token:
            self._state.offline_token = token.refresh_token
        self._put(txn, token if self.settings.store_offline_token else token.without_refresh_token())
        log.info("redeemed the offline token for %s", self.settings.key)
        return token

    def _login(self, txn: Transaction, interaction: Interaction) -> Token:
        from ._prompt import is_interactive, make_prompt  # the terminal and browser, only for a login

        interactive = is_interactive() if interaction.interactive is None else interaction.interactive
        if not interactive:
            command = self.login_command()
            raise LoginRequired(
                f"no valid token for {self.settings.client_id} at {self.settings.issuer} and no one to ask; "
                f"run: {command}",
                issuer=self.settings.issuer,
                client_id=self.settings.client_id,
                command=command,
            )
        with contextlib.ExitStack() as marker:
            response = self.server.login(
                show=make_prompt(interaction.prompt, interaction.open_browser),
                clock=self._clock,
                sleep=self._sleep,
                on_started=lambda code: marker.enter_context(txn.login_marker(code.expires_at)),
            )
        token = self._token_from(response)
        self._put(txn, token)
        log.info("logged in to %s as client %s", self.settings.issuer, self.settings.client_id)
        return token

    def _token_from(self, response: dict[str, Any], previous: Token | None = None) -> Token:
        try:
            return Token.from_response(response, self._clock(), previous=previous)
        except ValueError as exc:
            raise ServerError(
                f"the authorization server at {self.settings.issuer} sent an unusable token: {exc}"
            ) from exc

    def _put(self, txn: Transaction, token: Token) -> None:
        """Write ``token``; if the store cannot take it, keep it in memory and write it later."""
        state = self._state
        replacing = txn.token.refresh_token if txn.token else None
        try:
            txn.put(token, replacing=replacing, metadata=self.server.discovered)
        except StaleWrite:
            # Our lock expired and someone else wrote since: their session wins in the store;
            # ours is still good in memory until its access token expires.
            log.warning("the store changed while this process held an expired lock; not overwriting it")
            state.unsaved = state.store_had = None
            return
        except CacheError as exc:
            if state.unsaved is None:
                state.store_had = replacing
            state.unsaved = token
            log.warning("cannot save the new tokens (%s); keeping them in memory and retrying the write later", exc)
            return
        state.unsaved = state.store_had = None

    def _adopt(self, token: Token, source: str) -> str:
        state = self._state
        state.token = token
        state.access_token = token.access_token
        state.header = "Bearer " + token.access_token
        state.due = state.due_of(token)
        log.debug(
            "using access token %s from %s, valid %.0f s more",
            fingerprint(token.access_token),
            source,
            token.expires_at - self._clock(),
        )
        return token.access_token

    # -- explicit operations ------------------------------------------------------------------

    def login(self, interaction: Interaction) -> Token:
        """Run a device login now, whatever the store holds."""
        with self._state.lock, self.store.transaction(self._identity, on_wait=_tell_waiting) as txn:
            assert not isinstance(txn, Written)  # only a `usable` callback ends the wait early
            self.server.remember(txn.metadata)
            self._state.unsaved = self._state.store_had = None
            token = self._login(txn, Interaction(True, interaction.prompt, interaction.open_browser))
            self._adopt(token, "the server")
            return token

    def logout(self, *, revoke: bool = True) -> tuple[bool, bool]:
        """Forget this identity's tokens here and, where the server allows, at the server.

        Returns (whether there was anything to remove, whether the server confirmed revocation).
        """
        state = self._state
        with state.lock:
            removed = self.store.forget(self._identity)
            unsaved = state.unsaved
            state.forget_token()
        token = unsaved or removed
        if token is None:
            return False, False
        if not revoke:
            return True, False
        self.server.remember(self.store.metadata(self.settings.issuer))
        return True, self.server.revoke(token)

    def cached_token(self) -> Token | None:
        return self._state.unsaved or self.store.read(self._identity)

    def login_command(self) -> str:
        """A command line to paste: every value shell-quoted (a client id can hold ``;``)."""
        import shlex

        s, q = self.settings, shlex.quote
        command = f"deviceauth login --issuer {q(s.issuer)} --client-id {q(s.client_id)}"
        if s.scope:
            command += f" --scope {q(s.scope)}"
        command += f" --cache {q(self.store.location)}"
        return command


def _tell_waiting(login: LoginInProgress) -> None:
    log.warning("waiting for a login in progress in process %d on %s", login.pid, login.host)
