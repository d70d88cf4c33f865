"""Migration from Provena's ``mdsisclienttools`` ``DeviceFlowManager``: same constructor, lasting auth.

Existing notebooks keep working after changing one import::

    # from mdsisclienttools.auth.TokenManager import DeviceFlowManager
    from deviceauth.compat import DeviceFlowManager

    manager = DeviceFlowManager(stage="PROD", keycloak_endpoint="https://auth.example.org/auth/realms/rrap")
    requests.get(url, auth=manager.get_auth())

What changes, on purpose:

- The constructor does no network or file I/O; the first ``get_auth()`` use or ``get_token()``
  logs in, reads the cache or refreshes.
- ``get_auth()`` returns the :class:`~deviceauth.DeviceAuth` itself. It refreshes on every use,
  so an auth object kept for hours stays valid (the original's ``BearerAuth`` held a static token).
- ``local_storage_location``: the deviceauth cache file (a directory means ``<dir>/.tokens.json``).
  Left unset, the deviceauth default is used (``$DEVICEAUTH_CACHE`` or
  ``~/.cache/deviceauth/.tokens.json``), not ``./.tokens.json`` in the working directory, so one
  login serves every notebook and directory. Pointing it at an old ``mdsisclienttools`` file is
  safe: its ``stages`` are kept as they are; if the old tool rewrites the file, the next call
  simply logs in again.
- ``local_storage_object`` (tokens kept in a caller's dict) is not supported: the point of the
  shared, locked cache file is that processes see each other's tokens. Passing it raises
  ``ValueError``.
- ``stage`` is validated as before (``TEST``, ``DEV``, ``STAGE``, ``PROD``). Tokens are kept per
  Keycloak realm, client and scope, so two stages that share a realm share a login.
- ``silent=True`` suppresses the printed login instructions and the browser; the link and code
  are then sent once as a WARNING on the ``deviceauth.compat`` logger, which reaches stderr when
  the application has not configured logging and goes where its logs go when it has (a login
  nobody can see would only wait until the code expired). Pass ``prompt=`` to show them your own
  way. Without ``silent`` the link and code are printed (on stderr, or as a link in Jupyter).
- ``auth_flow=AuthFlow.OFFLINE`` with ``offline_token=``: never prompts; the offline token is
  not written to the cache (as before), only the access tokens it yields.
- A login may prompt only where a person can answer (a terminal or Jupyter); elsewhere
  ``LoginRequired`` is raised instead of waiting forever. ``interactive=True`` overrides that.
- ``force_token_refresh=True`` forgets this identity's cached tokens at first use (not in the
  constructor), so the next call logs in again (or redeems the offline token).

The keyword-only arguments after the original ones (``prompt``, ``interactive``,
``open_browser``) are deviceauth extensions.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from ._auth import DeviceAuth
from ._flow import DeviceCode

__all__ = ["DEFAULT_CLIENT_ID", "AuthFlow", "DeviceFlowManager", "Stage"]

log = logging.getLogger("deviceauth.compat")

DEFAULT_CLIENT_ID = "client-tools"
_CACHE_NAME = ".tokens.json"


class Stage(StrEnum):
    """The application stages the original manager accepted."""

    TEST = "TEST"
    DEV = "DEV"
    STAGE = "STAGE"
    PROD = "PROD"


class AuthFlow(StrEnum):
    """``DEVICE``: a person logs in once; ``OFFLINE``: an offline token, never a prompt."""

    DEVICE = "DEVICE"
    OFFLINE = "OFFLINE"


class DeviceFlowManager:
    """Provena's ``DeviceFlowManager`` constructor over a :class:`~deviceauth.DeviceAuth`.

    :param stage: one of ``TEST``, ``DEV``, ``STAGE``, ``PROD`` (``ValueError`` otherwise).
    :param keycloak_endpoint: the Keycloak realm URL (``.../auth/realms/<realm>``): the issuer.
    :param auth_flow: ``DEVICE`` (default) or ``OFFLINE`` (requires ``offline_token``).
    :param offline_token: a Keycloak offline token, only with ``auth_flow=OFFLINE``.
    :param client_id: the Keycloak client (default ``client-tools``).
    :param local_storage_location: the token cache file (or a directory to hold ``.tokens.json``).
    :param local_storage_object: not supported (``ValueError``); see the module docstring.
    :param scopes: requested scopes (default: the client's default scopes).
    :param force_token_refresh: forget the cached tokens at first use and log in again.
    :param silent: no printed instructions and no browser; the link and code go to logging.
    :param prompt: deviceauth extension: show the ``DeviceCode`` your own way.
    :param interactive: deviceauth extension: may a login prompt a person (default: TTY or Jupyter).
    :param open_browser: deviceauth extension: open the verification page (default: where usable).
    """

    def __init__(
        self,
        stage: str,
        keycloak_endpoint: str,
        auth_flow: AuthFlow | str = AuthFlow.DEVICE,
        offline_token: str | None = None,
        client_id: str = DEFAULT_CLIENT_ID,
        local_storage_location: str | os.PathLike[str] | None = None,
        local_storage_object: dict[str, Any] | None = None,
        scopes: Sequence[str] = (),
        force_token_refresh: bool = False,
        silent: bool = False,
        *,
        prompt: Callable[[DeviceCode], None] | None = None,
        interactive: bool | None = None,
        open_browser: bool | None = None,
    ) -> None:
        self.stage = _stage(stage)
        self.auth_flow = _auth_flow(auth_flow, offline_token)
        if local_storage_object is not None:
            raise ValueError(
                "local_storage_object is not supported by deviceauth.compat: tokens live in the shared, "
                "locked cache file; pass local_storage_location=... or leave both unset"
            )
        self.keycloak_endpoint = keycloak_endpoint.rstrip("/")
        self.client_id = client_id
        self.scopes = list(scopes)
        self.silent = silent
        self.token_storage_location = _cache_path(local_storage_location)
        offline = self.auth_flow is AuthFlow.OFFLINE
        self._auth = DeviceAuth(
            self.keycloak_endpoint,
            client_id,
            scope=self.scopes or None,
            cache=self.token_storage_location,
            prompt=prompt or (_log_prompt if silent else None),
            interactive=False if offline else interactive,
            open_browser=False if silent else open_browser,
            offline_token=offline_token if offline else None,
            # Keycloak's fixed paths, as the original used: no discovery request needed.
            token_endpoint=f"{self.keycloak_endpoint}/protocol/openid-connect/token",
            device_authorization_endpoint=f"{self.keycloak_endpoint}/protocol/openid-connect/auth/device",
            revocation_endpoint=f"{self.keycloak_endpoint}/protocol/openid-connect/revoke",
        )
        self._forget_pending = force_token_refresh
        self._forget_lock = threading.Lock()

    @property
    def device_auth(self) -> DeviceAuth:
        """The underlying ``DeviceAuth`` (also usable with HTTPX and urllib3: ``.httpx``, ``.pool_manager()``)."""
        return self._auth

    def get_auth(self) -> DeviceAuth:
        """The requests ``auth=`` object; unlike the original it stays valid: every request gets a fresh token."""
        self._forget_if_forced()
        return self._auth

    def get_token(self) -> str:
        """A valid access token (cached, refreshed, or after a login)."""
        self._forget_if_forced()
        return self._auth.get_token()

    def reset_storage(self) -> None:
        """Forget this identity's cached tokens (the original cleared every stage of its file)."""
        self._auth.logout(revoke=False)

    def __repr__(self) -> str:
        return (
            f"DeviceFlowManager(stage={self.stage.value!r}, keycloak_endpoint={self.keycloak_endpoint!r}, "
            f"auth_flow={self.auth_flow.value!r}, client_id={self.client_id!r})"
        )

    def _forget_if_forced(self) -> None:
        if not self._forget_pending:
            return
        with self._forget_lock:
            if self._forget_pending:
                self._auth.logout(revoke=False)
                self._forget_pending = False


def _stage(stage: str) -> Stage:
    try:
        return Stage(str(stage).upper())
    except ValueError:
        raise ValueError(f"Stage {stage} is not one of {[s.value for s in Stage]}.") from None


def _auth_flow(auth_flow: AuthFlow | str, offline_token: str | None) -> AuthFlow:
    try:
        flow = AuthFlow(auth_flow)
    except ValueError:
        raise ValueError(f"auth_flow {auth_flow!r} is not one of {[f.value for f in AuthFlow]}.") from None
    if flow is AuthFlow.OFFLINE and not offline_token:
        raise ValueError("You are using an offline auth flow but did not provide an offline token!")
    if flow is AuthFlow.DEVICE and offline_token:
        raise ValueError("You provided an offline token but specified the DEVICE auth flow; use AuthFlow.OFFLINE.")
    return flow


def _cache_path(location: str | os.PathLike[str] | None) -> Path | None:
    if location is None:
        return None
    path = Path(location).expanduser()
    return path / _CACHE_NAME if path.is_dir() else path


def _log_prompt(code: DeviceCode) -> None:
    log.warning("To sign in, open %s and enter the code %s", code.verification_uri, code.user_code)
