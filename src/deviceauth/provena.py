"""Migration from Provena's ``mdsisclienttools``: its ``DeviceFlowManager``, over a lasting ``DeviceAuth``.

Existing notebooks and scripts keep working after changing one import::

    # from mdsisclienttools.auth.TokenManager import DeviceFlowManager
    from deviceauth.provena import DeviceFlowManager      # deviceauth.compat is the same module

    manager = DeviceFlowManager(stage="PROD", keycloak_endpoint="https://auth.example.org/auth/realms/rrap")
    requests.get(url, auth=manager.get_auth())

Kept from the original, because scripts rely on it:

- A login prompts and waits wherever the code runs, a plain script without a terminal included
  (the original printed the link and code and polled). Pass ``interactive=False`` to raise
  ``LoginRequired`` instead, e.g. in cron jobs.
- The names real code imports: ``DeviceFlowManager``, ``BearerAuth``, ``Tokens``,
  ``StageTokens``, ``Stage``, ``AuthFlow``, ``StorageType``, ``LOCAL_STORAGE_DEFAULT``,
  ``DEFAULT_CLIENT_ID``; the constructor's arguments, their validation and error messages.
- A user's login carries over: the first time this identity has nothing in the deviceauth cache,
  the refresh token the old tool saved for this ``stage`` in its ``.tokens.json`` (the
  ``local_storage_location`` file, default ``./.tokens.json``) is redeemed once, and only if it
  was issued by this ``keycloak_endpoint`` (its ``iss`` claim), so it never goes to another server.
  If it is no longer valid, a normal login follows.

What changes, on purpose:

- The old tool's file is only ever read, never written: deviceauth keeps its own cache beside it
  (``.tokens.json`` → ``.tokens.deviceauth.json``) when ``local_storage_location`` is given, or in
  the deviceauth default (``$DEVICEAUTH_CACHE`` or ``~/.cache/deviceauth/.tokens.json``, shared by
  every directory) when it is not. Both tools can be used side by side without clobbering each
  other. (Where the realm has "Revoke Refresh Token" on, the refresh that imports a login consumes
  the old tool's refresh token, so the old tool then logs in again.)
- The constructor makes no request and reads no file (it only checks whether
  ``local_storage_location`` is a directory); the first ``get_auth()`` use or ``get_token()``
  reads the caches, refreshes or logs in.
- ``get_auth()`` returns the :class:`~deviceauth.DeviceAuth` itself, which gets a valid token for
  every request, so an auth object kept for hours stays valid (the original's ``BearerAuth`` held
  a static token). ``get_token()`` still returns a string that goes stale when the token expires:
  call it again, or give OpenAPI clients a ``Configuration`` whose ``access_token`` property calls it.
- ``local_storage_object`` (tokens kept in a caller's dict) is not supported: the point of the
  shared, locked cache file is that processes see each other's tokens, and a web application that
  keeps one dict per user must not share one login between users. Passing it raises ``ValueError``.
- ``stage`` is validated as before (``TEST``, ``DEV``, ``STAGE``, ``PROD``). Tokens are kept per
  Keycloak realm, client and scope, so two stages that share a realm share a login.
- ``silent=True`` suppresses the printed instructions and the browser; the link and code are then
  sent once as a WARNING on the ``deviceauth.provena`` logger, which reaches stderr when the
  application has not configured logging (a login nobody can see would only wait until the code
  expired). Pass ``prompt=`` to show them your own way. Without ``silent`` they are printed on
  stderr (or shown as a link in Jupyter), not on stdout.
- ``auth_flow=AuthFlow.OFFLINE`` with ``offline_token=``: never prompts; the offline token is not
  written to the cache (as before), only the access tokens it yields.
- ``force_token_refresh=True`` forgets this identity's cached tokens at first use (not in the
  constructor), so the next call logs in again (or redeems the offline token); the old tool's
  file is left as it is.

The keyword-only arguments after the original ones (``prompt``, ``interactive``,
``open_browser``) are deviceauth extensions.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import requests

from ._auth import DeviceAuth
from ._exceptions import LoginRequired
from ._flow import DeviceCode

__all__ = [
    "DEFAULT_CLIENT_ID",
    "LOCAL_STORAGE_DEFAULT",
    "AuthFlow",
    "BearerAuth",
    "DeviceFlowManager",
    "Stage",
    "StageTokens",
    "StorageType",
    "Tokens",
]

log = logging.getLogger("deviceauth.provena")

DEFAULT_CLIENT_ID = "client-tools"
LOCAL_STORAGE_DEFAULT = ".tokens.json"
_CACHE_SUFFIX = ".deviceauth"
# A distinct leeway gives the one-off importer its own in-memory state, so the old tool's
# refresh token it redeems is never remembered as an offline token by the manager's identity.
_IMPORT_LEEWAY = 59.0


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


class StorageType(StrEnum):
    """Where the original kept tokens; here only ``FILE`` is used (see the module docstring)."""

    FILE = "FILE"
    OBJECT = "OBJECT"


class BearerAuth(requests.auth.AuthBase):
    """A requests auth that sends one fixed token, as the original's did (its helpers take one).

    Prefer ``DeviceFlowManager.get_auth()``, whose auth never goes stale.
    """

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r

    def __repr__(self) -> str:
        return "BearerAuth(token=...)"


@dataclass
class Tokens:
    """One stage's entry in the old tool's file (the offline flow stored no refresh token)."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)


@dataclass
class StageTokens:
    """The old tool's ``.tokens.json``: ``{"stages": {"PROD": {"access_token": ..., ...}, ...}}``."""

    stages: dict[Stage, Tokens | None]

    @classmethod
    def parse_obj(cls, data: Any) -> StageTokens:
        """Read the layout; ``ValueError`` if it is not the old tool's."""
        stages = data.get("stages") if isinstance(data, Mapping) else None
        if not isinstance(stages, Mapping):
            raise ValueError("not an mdsisclienttools token file: no 'stages'")
        parsed: dict[Stage, Tokens | None] = {}
        for name, entry in stages.items():
            try:
                stage = Stage(name)
            except ValueError:
                continue
            if isinstance(entry, Mapping) and isinstance(entry.get("access_token"), str):
                refresh = entry.get("refresh_token")
                parsed[stage] = Tokens(entry["access_token"], refresh if isinstance(refresh, str) else None)
            else:
                parsed[stage] = None
        return cls(parsed)

    @classmethod
    def parse_file(cls, path: str | os.PathLike[str]) -> StageTokens:
        with open(path, encoding="utf-8") as file:
            return cls.parse_obj(json.load(file))

    def dict(self, *, exclude_none: bool = False) -> dict[str, Any]:
        stages: dict[str, Any] = {}
        for stage, tokens in self.stages.items():
            if tokens is None:
                if not exclude_none:
                    stages[stage.value] = None
                continue
            entry: dict[str, Any] = {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token}
            stages[stage.value] = {k: v for k, v in entry.items() if v is not None or not exclude_none}
        return {"stages": stages}

    def json(self, *, exclude_none: bool = False) -> str:
        return json.dumps(self.dict(exclude_none=exclude_none))


class DeviceFlowManager:
    """Provena's ``DeviceFlowManager`` constructor over a :class:`~deviceauth.DeviceAuth`.

    :param stage: one of ``TEST``, ``DEV``, ``STAGE``, ``PROD`` (``ValueError`` otherwise).
    :param keycloak_endpoint: the Keycloak realm URL (``.../auth/realms/<realm>``): the issuer.
    :param auth_flow: ``DEVICE`` (default) or ``OFFLINE`` (requires ``offline_token``).
    :param offline_token: a Keycloak offline token, only with ``auth_flow=OFFLINE``.
    :param client_id: the Keycloak client (default ``client-tools``).
    :param local_storage_location: the old tool's token file (or a directory holding
        ``.tokens.json``): read once to carry a login over; deviceauth's cache goes beside it.
    :param local_storage_object: not supported (``ValueError``); see the module docstring.
    :param scopes: requested scopes (default: the client's default scopes).
    :param force_token_refresh: forget the cached tokens at first use and log in again.
    :param silent: no printed instructions and no browser; the link and code go to logging.
    :param prompt: deviceauth extension: show the ``DeviceCode`` your own way.
    :param interactive: deviceauth extension: may a login prompt and wait for a person?
        Default True, as the original; False raises ``LoginRequired`` instead.
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
        if local_storage_location is not None and local_storage_object is not None:
            raise ValueError("Can't specify both local storage file and object.")
        if local_storage_object is not None:
            raise ValueError(
                "local_storage_object is not supported by deviceauth.provena: tokens live in the shared, "
                "locked cache file; pass local_storage_location=... or leave both unset"
            )
        self.stage = _stage(stage)
        self.auth_flow = _auth_flow(auth_flow, offline_token)
        self.storage_type = StorageType.FILE
        self.keycloak_endpoint = keycloak_endpoint.rstrip("/")
        self.client_id = client_id
        self.scopes = list(scopes)
        self.silent = silent
        self.token_storage_location, self.cache_location = _locations(local_storage_location)
        offline = self.auth_flow is AuthFlow.OFFLINE
        self._options: dict[str, Any] = {
            "scope": self.scopes or None,
            "cache": self.cache_location,
            # Keycloak's fixed paths, as the original used: no discovery request needed.
            "token_endpoint": f"{self.keycloak_endpoint}/protocol/openid-connect/token",
            "device_authorization_endpoint": f"{self.keycloak_endpoint}/protocol/openid-connect/auth/device",
            "revocation_endpoint": f"{self.keycloak_endpoint}/protocol/openid-connect/revoke",
        }
        self._auth = DeviceAuth(
            self.keycloak_endpoint,
            client_id,
            prompt=prompt or (_log_prompt if silent else None),
            interactive=False if offline else (True if interactive is None else interactive),
            open_browser=False if silent else open_browser,
            offline_token=offline_token if offline else None,
            **self._options,
        )
        self._forget_pending = force_token_refresh
        self._import_pending = not offline and not force_token_refresh
        self._first_use_lock = threading.Lock()

    @property
    def device_auth(self) -> DeviceAuth:
        """The underlying ``DeviceAuth`` (also usable with HTTPX and urllib3: ``.httpx``, ``.pool_manager()``)."""
        return self._auth

    def get_auth(self) -> DeviceAuth:
        """The requests ``auth=`` object; unlike the original it stays valid: every request gets a fresh token."""
        self._first_use()
        return self._auth

    def get_token(self) -> str:
        """A valid access token now (cached, refreshed, or after a login); call again when it expires."""
        self._first_use()
        return self._auth.get_token()

    def reset_storage(self) -> None:
        """Forget this identity's cached tokens (the original cleared every stage of its file)."""
        self._auth.logout(revoke=False)

    def __repr__(self) -> str:
        return (
            f"DeviceFlowManager(stage={self.stage.value!r}, keycloak_endpoint={self.keycloak_endpoint!r}, "
            f"auth_flow={self.auth_flow.value!r}, client_id={self.client_id!r})"
        )

    def _first_use(self) -> None:
        if not (self._forget_pending or self._import_pending):
            return
        with self._first_use_lock:
            if self._forget_pending:
                self._auth.logout(revoke=False)
                self._forget_pending = False
            if self._import_pending:
                self._import_legacy_login()
                self._import_pending = False

    def _import_legacy_login(self) -> None:
        """Redeem the old tool's refresh token for this stage once, if deviceauth has nothing yet."""
        legacy = self.token_storage_location
        if legacy == self._auth.cache_path or self._auth.cached_token() is not None:
            return
        refresh_token = _legacy_refresh_token(legacy, self.stage)
        if refresh_token is None:
            return
        if _issuer_of(refresh_token) != self.keycloak_endpoint:
            log.info("not importing the %s login from %s: it was issued by another server", self.stage.value, legacy)
            return
        importer = DeviceAuth(
            self.keycloak_endpoint,
            self.client_id,
            interactive=False,
            offline_token=refresh_token,
            store_offline_token=True,  # what it yields is an ordinary session: keep its refresh token
            leeway=_IMPORT_LEEWAY,
            **self._options,
        )
        try:
            importer.get_token()
        except LoginRequired:
            log.info("the %s login saved by mdsisclienttools in %s has expired", self.stage.value, legacy)
        else:
            log.info("carried over the %s login saved by mdsisclienttools in %s", self.stage.value, legacy)


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


def _locations(location: str | os.PathLike[str] | None) -> tuple[Path, Path | None]:
    """The old tool's file (read only) and deviceauth's cache (None: the deviceauth default)."""
    if location is None:
        return Path(LOCAL_STORAGE_DEFAULT).absolute(), None
    path = Path(location).expanduser().absolute()
    legacy = path / LOCAL_STORAGE_DEFAULT if path.is_dir() else path
    return legacy, legacy.with_name(f"{legacy.stem}{_CACHE_SUFFIX}{legacy.suffix}")


def _legacy_refresh_token(path: Path, stage: Stage) -> str | None:
    try:
        tokens = StageTokens.parse_file(path).stages.get(stage)
    except (OSError, ValueError, UnicodeDecodeError):  # absent, unreadable, or not the old tool's layout
        return None
    return tokens.refresh_token if tokens is not None else None


def _issuer_of(jwt: str) -> str | None:
    """The ``iss`` claim of a JWT, unverified: only to decide where the token may be sent."""
    parts = jwt.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer.rstrip("/") if isinstance(issuer, str) else None


def _log_prompt(code: DeviceCode) -> None:
    log.warning("To sign in, open %s and enter the code %s", code.verification_uri, code.user_code)
