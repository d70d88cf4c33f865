"""``DeviceAuth``: the object users create and pass as ``auth=``."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from ._engine import Interaction, Settings, TokenEngine, normalize_scope
from ._flow import DeviceCode
from ._requests import retry_on_401
from ._token import Token
from ._transport import check_transport

if TYPE_CHECKING:
    from .httpx import HttpxAuth
    from .httpx2 import Httpx2Auth
    from .urllib3 import PoolManager

__all__ = ["OFFLINE_TOKEN_ENV", "DeviceAuth"]

OFFLINE_TOKEN_ENV = "DEVICEAUTH_OFFLINE_TOKEN"  # noqa: S105 (a variable name)


class DeviceAuth(requests.auth.AuthBase):
    """Bearer tokens from an OAuth 2.0 device login, refreshed and shared through ``.tokens.json``.

    Pass it as ``auth=`` to ``requests`` (and, through its adapters, to HTTPX and urllib3), or
    call ``get_token()``. Creating one does no network or file I/O: the first request that
    needs a token reads the cache, refreshes, or starts a device login.

    :param issuer: the authorization server's issuer URL (for Keycloak, the realm URL,
        e.g. ``https://auth.example.org/auth/realms/rrap``).
    :param client_id: the OAuth client registered for the device flow.
    :param scope: space-separated or a list; part of the cache key.
    :param cache: the token cache file; default ``$DEVICEAUTH_CACHE`` or
        ``~/.cache/deviceauth/.tokens.json``.
    :param client_secret: for confidential clients only.
    :param interactive: may a login prompt a person? Default: stdin is a TTY or Jupyter.
        When false and no token can be refreshed, ``LoginRequired`` is raised.
    :param prompt: called with a ``DeviceCode`` to show the link and code your own way
        (default: print on stderr).
    :param open_browser: open the verification page in a browser; default only where one is
        usable (not over SSH, in CI, without a display, or with a console browser).
    :param leeway: refresh this many seconds before expiry (default 60 s, at most a quarter
        of the token's life, so short-lived tokens are not refreshed on every call).
    :param offline_token: a refresh token meant for unattended use (Keycloak ``offline_access``);
        default ``$DEVICEAUTH_OFFLINE_TOKEN``. Used when the cache has nothing to refresh with;
        never prompts; never written to the cache unless ``store_offline_token=True`` (do that
        when the server rotates offline tokens, so every process sees the newest one).
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        *,
        scope: str | Sequence[str] | None = None,
        cache: str | os.PathLike[str] | None = None,
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
    ) -> None:
        endpoints = {
            "token_endpoint": token_endpoint,
            "device_authorization_endpoint": device_authorization_endpoint,
            "revocation_endpoint": revocation_endpoint,
        }
        settings = Settings(
            issuer=issuer,
            client_id=client_id,
            scope=normalize_scope(scope if scope is None or isinstance(scope, str) else tuple(scope)),
            cache_path=Path(cache).expanduser() if cache is not None else None,
            client_secret=client_secret,
            token_endpoint_auth_method=token_endpoint_auth_method,
            leeway=leeway,
            timeout=timeout,
            lock_timeout=lock_timeout,
            verify=verify,
            endpoints=tuple((name, url) for name, url in endpoints.items() if url),
            offline_token=offline_token or os.environ.get(OFFLINE_TOKEN_ENV) or None,
            store_offline_token=store_offline_token,
        )
        self._setup(settings, Interaction(interactive, prompt, open_browser))

    def _setup(self, settings: Settings, interaction: Interaction) -> None:
        self._settings = settings
        self._interaction = interaction
        self._engine = TokenEngine(settings)
        self._requests_hook = retry_on_401(self._replace_rejected)

    # -- tokens -------------------------------------------------------------------------------

    def get_token(self) -> str:
        """A valid access token: from memory, the cache, a refresh, or (if allowed) a login."""
        return self._engine.access_token(self._interaction)

    def login(self) -> None:
        """Run the device login now, even if a valid token is cached."""
        self._engine.login(self._interaction)

    def logout(self, *, revoke: bool = True) -> bool:
        """Remove this identity from the cache (and revoke its tokens at the server if it can).

        Returns whether there was anything to remove.
        """
        return self._engine.logout(revoke=revoke)

    def cached_token(self) -> Token | None:
        """The token stored in the cache for this identity, without refreshing or logging in."""
        return self._engine.cached_token()

    def _replace_rejected(self, rejected: str) -> str:
        return self._engine.replace_rejected(rejected, self._interaction)

    @property
    def issuer(self) -> str:
        return self._settings.issuer

    @property
    def client_id(self) -> str:
        return self._settings.client_id

    @property
    def scope(self) -> str | None:
        return self._settings.scope

    @property
    def cache_path(self) -> Path:
        return self._engine.cache.path

    # -- requests -----------------------------------------------------------------------------

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        check_transport(request.url or "")
        token = self._engine.access_token(self._interaction)
        request.headers["Authorization"] = f"Bearer {token}"
        request.register_hook("response", self._requests_hook)  # type: ignore[no-untyped-call]
        return request

    # -- other libraries: one engine, so every adapter shares the token, the cache and the lock --

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
        # Configuration only: the child re-opens the cache and builds its own locks and sessions.
        return {"settings": self._settings, "interaction": self._interaction}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._setup(state["settings"], state["interaction"])
