"""``DeviceAuth``: the object users create and pass as ``auth=``."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._engine import TokenEngine
from ._location import open_store
from ._requests import retry_on_401
from ._settings import Interaction, Settings, normalize_scope
from ._store import TokenStore
from ._token import Token
from ._transport import check_transport

if TYPE_CHECKING:
    import requests

    from ._flow import DeviceCode
    from .httpx import HttpxAuth
    from .httpx2 import Httpx2Auth
    from .urllib3 import PoolManager

__all__ = ["OFFLINE_TOKEN_ENV", "DeviceAuth", "LogoutResult"]

OFFLINE_TOKEN_ENV = "DEVICEAUTH_OFFLINE_TOKEN"  # noqa: S105 (a variable name)
ISSUER_ENV = "DEVICEAUTH_ISSUER"


@dataclass(frozen=True, slots=True)
class LogoutResult:
    """What ``logout()`` did; true when there was something to remove.

    ``revoked`` is true only when the server confirmed the revocation of every token; when it is
    false the tokens are gone from the store but may stay valid at the server until they expire.
    """

    removed: bool
    revoked: bool

    def __bool__(self) -> bool:
        return self.removed


class DeviceAuth:
    """Bearer tokens from an OAuth 2.0 device login, refreshed and shared through a token store.

    Pass it as ``auth=`` to ``requests`` (it is the callable requests' ``auth=`` takes; importing
    deviceauth does not import requests), through its adapters to HTTPX and urllib3, or call
    ``get_token()``. Creating one does no network or file I/O: the first request that
    needs a token reads the store, refreshes, or starts a device login. Bad arguments raise
    ``ValueError``/``TypeError`` here, not on first use.

    :param issuer: the authorization server's issuer URL (for Keycloak, the realm URL,
        e.g. ``https://auth.example.org/auth/realms/rrap``): https, or http on a loopback host.
    :param client_id: the OAuth client registered for the device flow.
    :param scope: space-separated or a list; part of the store key.
    :param cache: where tokens are shared: a file path (default ``$DEVICEAUTH_CACHE`` or
        ``~/.cache/deviceauth/.tokens.json``), a store URL (``redis://``, ``rediss://``,
        ``unix://``), or a ``TokenStore``.
    :param client_secret: for confidential clients only.
    :param interactive: may a login prompt a person? Default: stdin is a TTY or Jupyter.
        When false and no token can be refreshed, ``LoginRequired`` is raised.
    :param prompt: called with a ``DeviceCode`` to show the link and code your own way
        (default: print on stderr).
    :param open_browser: open the verification page in a browser; default only where one is
        usable (not over SSH, in CI, without a display, or with a console browser).
    :param leeway: refresh this many seconds before expiry (default 60 s, at most a quarter
        of the token's life, so short-lived tokens are not refreshed on every call). Objects for
        the same identity and store in one process share one token; the largest leeway applies.
    :param timeout: seconds for each exchange with the authorization server (finite, > 0).
    :param lock_timeout: seconds to wait for the store's lock (a login in progress extends it).
    :param token_endpoint_auth_method: ``client_secret_basic`` (default with a secret),
        ``client_secret_post`` or ``none``.
    :param offline_token: a refresh token meant for unattended use (Keycloak ``offline_access``);
        default ``$DEVICEAUTH_OFFLINE_TOKEN`` when ``$DEVICEAUTH_ISSUER`` is unset or names this
        issuer. Used when the store has nothing to refresh with; never prompts; never stored
        unless ``store_offline_token=True`` (do that when the server rotates offline tokens, so
        every process sees the newest one).
    :param max_code_life: the longest a login waits for the person, in seconds (default 30 min),
        whatever the server says its device code's life is; other processes wait that long too.
    :param clock: wall-clock seconds and ``sleep``: the time source, for tests that must not wait
        (not pickled: a worker process uses the real clock).
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        *,
        scope: str | Sequence[str] | None = None,
        cache: str | os.PathLike[str] | TokenStore | None = None,
        client_secret: str | None = None,
        interactive: bool | None = None,
        prompt: Callable[[DeviceCode], None] | None = None,
        open_browser: bool | None = None,
        leeway: float | None = None,
        timeout: float = 30.0,
        lock_timeout: float | None = None,
        token_endpoint: str | None = None,
        device_authorization_endpoint: str | None = None,
        revocation_endpoint: str | None = None,
        token_endpoint_auth_method: str | None = None,
        verify: bool | str = True,
        offline_token: str | None = None,
        store_offline_token: bool = False,
        max_code_life: float | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        endpoints = {
            "token_endpoint": token_endpoint,
            "device_authorization_endpoint": device_authorization_endpoint,
            "revocation_endpoint": revocation_endpoint,
        }
        settings = Settings(
            issuer=issuer,
            client_id=client_id,
            scope=normalize_scope(scope),
            client_secret=client_secret,
            token_endpoint_auth_method=token_endpoint_auth_method,
            leeway=leeway,
            timeout=timeout,
            lock_timeout=lock_timeout,
            verify=verify,
            endpoints=tuple((name, url) for name, url in endpoints.items() if url),
            offline_token=offline_token or _offline_token_from_env(issuer),
            store_offline_token=store_offline_token,
            max_code_life=max_code_life,
        )
        if prompt is not None and not callable(prompt):
            raise TypeError("prompt must be a callable taking a DeviceCode")
        interaction = Interaction(interactive, prompt, open_browser)
        self._setup(settings, interaction, open_store(cache, lock_timeout=lock_timeout), clock, sleep)

    def _setup(
        self,
        settings: Settings,
        interaction: Interaction,
        store: TokenStore,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._interaction = interaction
        self._store = store
        self._engine = TokenEngine(settings, store, clock=clock, sleep=sleep)
        self._vetted_url = ""  # the last https URL check_transport passed
        self._requests_hook = retry_on_401(self.renew)

    # -- tokens (the TokenSource every adapter uses) ---------------------------------------------

    def get_token(self) -> str:
        """A valid access token: from memory, the store, a refresh, or (if allowed) a login."""
        return self._engine.access_token(self._interaction)

    def fresh_token(self) -> str | None:
        """The in-memory access token if it is fresh, else None; never blocks or does I/O."""
        return self._engine.fresh_token()

    def renew(self, rejected: str | None = None) -> str:
        """A token different from ``rejected``, the one an API just answered 401 to.

        For SDKs that see the 401 through a client deviceauth does not wrap. Refreshes (or
        adopts what another process refreshed) only if ``rejected`` is still the current token.
        """
        return self._engine.replace_rejected(rejected, self._interaction)

    def login(self) -> None:
        """Run the device login now, even if a valid token is cached."""
        self._engine.login(self._interaction)

    def logout(self, *, revoke: bool = True) -> LogoutResult:
        """Remove this identity from the store and, with ``revoke``, revoke its tokens at the server.

        The result is true when there was something to remove; its ``revoked`` says whether the
        server confirmed the revocation.
        """
        removed, revoked = self._engine.logout(revoke=revoke)
        return LogoutResult(removed=removed, revoked=revoked)

    def cached_token(self) -> Token | None:
        """The token stored for this identity, without refreshing or logging in."""
        return self._engine.cached_token()

    @property
    def issuer(self) -> str:
        """The issuer URL, without a trailing slash."""
        return self._settings.issuer

    @property
    def client_id(self) -> str:
        return self._settings.client_id

    @property
    def scope(self) -> str | None:
        """The normalized scope (sorted, space-separated), or None."""
        return self._settings.scope

    @property
    def store(self) -> TokenStore:
        """Where this identity's tokens are shared."""
        return self._store

    @property
    def cache_path(self) -> Path:
        """The token cache file (for a file store; other stores have no path)."""
        path = getattr(self._store, "path", None)
        if not isinstance(path, Path):
            raise AttributeError(f"{self._store.location} is not a file")
        return path

    @property
    def login_command(self) -> str:
        """The ``deviceauth login ...`` command that logs this identity in from a shell."""
        return self._engine.login_command()

    # -- requests -----------------------------------------------------------------------------

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = request.url or ""
        # An API client calls the same URLs again and again; plain http is vetted every time
        # (proxy settings can change), https once per URL.
        if url != self._vetted_url and check_transport(url)[:6] == "https:":
            self._vetted_url = url
        request.headers["Authorization"] = self._engine.authorization(self._interaction)
        # register_hook re-checks its arguments on every call; this hook is known to be callable.
        request.hooks["response"].append(self._requests_hook)
        return request

    # -- other libraries: one engine, so every adapter shares the token, the store and the lock --

    @functools.cached_property
    def httpx(self) -> HttpxAuth:
        """This identity as an ``httpx.Auth``: ``httpx.Client(auth=auth.httpx)`` (sync or async)."""
        from .httpx import HttpxAuth

        return HttpxAuth(self)

    @functools.cached_property
    def httpx2(self) -> Httpx2Auth:
        """This identity as an ``httpx2.Auth``: ``httpx2.Client(auth=auth.httpx2)`` (sync or async)."""
        from .httpx2 import Httpx2Auth

        return Httpx2Auth(self)

    def pool_manager(self, *, origins: Iterable[str] | None = None, **kwargs: Any) -> PoolManager:
        """A ``urllib3.PoolManager`` that adds this identity's token (see ``deviceauth.urllib3``)."""
        from .urllib3 import PoolManager

        return PoolManager(self, origins=origins, **kwargs)

    # -- identity, pickling -------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"DeviceAuth(issuer={self.issuer!r}, client_id={self.client_id!r}, scope={self.scope!r})"

    def __getstate__(self) -> dict[str, Any]:
        # Configuration only: the child re-opens the store and builds its own locks and sessions.
        return {"settings": self._settings, "interaction": self._interaction, "store": self._store}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._setup(state["settings"], state["interaction"], state["store"])


def _offline_token_from_env(issuer: str) -> str | None:
    token = os.environ.get(OFFLINE_TOKEN_ENV) or None
    bound_to = os.environ.get(ISSUER_ENV)
    if token is not None and bound_to and bound_to.rstrip("/") != str(issuer).rstrip("/"):
        return None  # meant for another issuer: never send it here
    return token
