"""The conversation with the authorization server: which client, which endpoints, and the calls.

``ServerSide`` gives the token policy four verbs (``refresh``, ``redeem``, ``login``,
``revoke``) and hides how they are made: one OAuth client per client configuration in this
process (Authlib, imported on first use, so ``import deviceauth`` and a warm call never load
it), discovery once per process (or taken from the store), explicit endpoints overriding it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._exceptions import DiscoveryError, ServerError
from ._process import ProcessState
from ._settings import Settings

if TYPE_CHECKING:
    from ._flow import DeviceCode, WaitStatus
    from ._oauth import OAuthClient
    from ._token import Token

__all__ = ["ServerSide"]

log = logging.getLogger("deviceauth")

_DEVICE_GRANT_HINT = " (in Keycloak, enable 'OAuth 2.0 Device Authorization Grant' on the client)"


class ServerSide:
    """One client registration at one issuer, as seen from this process."""

    def __init__(self, settings: Settings, state: ProcessState) -> None:
        self.settings = settings
        self._state = state

    # -- the verbs the policy uses --------------------------------------------------------------

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        return self._client().refresh(self.endpoint("token_endpoint"), refresh_token)

    def login(
        self,
        *,
        show: Callable[[DeviceCode], WaitStatus | None],
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        on_started: Callable[[DeviceCode], None],
    ) -> dict[str, Any]:
        from ._flow import MAX_CODE_LIFE, run_device_flow

        device_endpoint = self.endpoint("device_authorization_endpoint")
        token_endpoint = self.endpoint("token_endpoint")
        return run_device_flow(
            self._client(),
            device_endpoint,
            token_endpoint,
            self.settings.scope,
            show=show,
            clock=clock,
            sleep=sleep,
            on_started=on_started,
            max_code_life=self.settings.max_code_life or MAX_CODE_LIFE,
        )

    def revoke(self, token: Token) -> bool:
        """Revoke the refresh token and the access token; True only if the server confirmed both."""
        try:
            endpoint = self.metadata().get("revocation_endpoint")
        except ServerError as exc:
            log.warning("could not revoke the tokens at the server: %s", exc)
            return False
        if not endpoint:
            log.warning(
                "%s advertises no revocation endpoint; the tokens stay valid until they expire", self.settings.issuer
            )
            return False
        confirmed = True
        for value, hint in ((token.refresh_token, "refresh_token"), (token.access_token, "access_token")):
            if not value:
                continue
            try:
                self._client().revoke(str(endpoint), value, hint)
            except ServerError as exc:
                confirmed = False
                log.warning("could not revoke the %s at the server: %s", hint.replace("_", " "), exc)
        return confirmed

    # -- metadata -------------------------------------------------------------------------------

    def remember(self, metadata: Mapping[str, Any] | None) -> None:
        """Take the issuer's discovery document from the store, so a new process skips discovery."""
        if self._state.metadata is None and metadata is not None:
            self._state.metadata = dict(metadata)

    @property
    def discovered(self) -> dict[str, Any] | None:
        return self._state.metadata

    def metadata(self) -> dict[str, Any]:
        state = self._state
        overrides = dict(self.settings.endpoints)
        if state.metadata is None and not {"token_endpoint", "device_authorization_endpoint"} <= overrides.keys():
            state.metadata = self._client().discover(self.settings.issuer)
        return {**(state.metadata or {}), **overrides}

    def endpoint(self, name: str) -> str:
        url = self.metadata().get(name)
        if not url or not isinstance(url, str):
            hint = _DEVICE_GRANT_HINT if name == "device_authorization_endpoint" else ""
            raise DiscoveryError(
                f"{self.settings.issuer} does not advertise a {name}{hint}; pass {name}=... to use a known URL",
                url=self.settings.issuer,
            )
        return url

    # -- clients --------------------------------------------------------------------------------

    def _client(self) -> OAuthClient:
        s = self.settings
        options = (s.client_secret, s.token_endpoint_auth_method, s.timeout, s.verify)
        client: OAuthClient | None = self._state.clients.get(options)
        if client is None:
            from ._oauth import OAuthClient

            client = self._state.clients[options] = OAuthClient(
                s.client_id,
                client_secret=s.client_secret,
                token_endpoint_auth_method=s.token_endpoint_auth_method,
                timeout=s.timeout,
                verify=s.verify,
            )
        return client
