"""The only module that talks to Authlib: token requests in, our types and errors out.

Authlib's requests ``OAuth2Session`` builds and authenticates every request (public clients
send ``client_id``; confidential ones use the method the caller picks). The device
authorization request (RFC 8628 §3.1) has no Authlib helper, so it is a plain POST on the
same session with Authlib's client authentication attached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError

from ._exceptions import (
    AccessDenied,
    AuthorizationError,
    DeviceCodeExpired,
    ServerError,
    TokenRejected,
)

__all__ = ["DEVICE_CODE_GRANT", "AuthorizationPending", "OAuthClient"]

log = logging.getLogger("deviceauth.oauth")

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_FORM_HEADERS = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"}


class AuthorizationPending(Exception):
    """Internal: the person has not answered yet (``slow`` when the server asked us to slow down)."""

    def __init__(self, slow: bool) -> None:
        super().__init__("slow_down" if slow else "authorization_pending")
        self.slow = slow


_TERMINAL: dict[str, tuple[type[AuthorizationError], str]] = {
    "access_denied": (AccessDenied, "the sign-in request was denied"),
    "expired_token": (DeviceCodeExpired, "the sign-in code expired before it was approved"),
    "invalid_grant": (TokenRejected, "the server rejected the refresh token (expired, revoked or already used)"),
}


class OAuthClient:
    """One client registration at one authorization server."""

    def __init__(
        self,
        client_id: str,
        *,
        client_secret: str | None = None,
        token_endpoint_auth_method: str | None = None,
        timeout: float = 30.0,
        verify: bool | str = True,
    ) -> None:
        self.client_id = client_id
        self._session = OAuth2Session(
            client_id=client_id,
            client_secret=client_secret,
            token_endpoint_auth_method=token_endpoint_auth_method,
            default_timeout=timeout,
        )
        # Passed on every call: requests lets REQUESTS_CA_BUNDLE override a session-level verify.
        self._verify = verify
        self.timeout = timeout

    def get(self, url: str) -> requests.Response:
        """A plain GET on the same connection pool (for discovery), without any token."""
        response: requests.Response = self._session.get(
            url, withhold_token=True, timeout=self.timeout, verify=self._verify, headers={"Accept": "application/json"}
        )
        return response

    def close(self) -> None:
        self._session.close()

    def request_device_code(self, endpoint: str, scope: str | None) -> dict[str, Any]:
        data = {"scope": scope} if scope else {}
        auth = self._session.client_auth(self._session.token_endpoint_auth_method)
        response = self._call(
            endpoint,
            lambda: self._session.post(
                endpoint, data=data, auth=auth, headers=dict(_FORM_HEADERS), verify=self._verify
            ),
        )
        body = _json_object(response, endpoint)
        if "error" in body:
            _raise_oauth(str(body["error"]), body.get("error_description"), endpoint)
        missing = [name for name in ("device_code", "user_code") if not body.get(name)]
        if missing or not (body.get("verification_uri") or body.get("verification_url")):
            raise ServerError(
                f"the device authorization response from {endpoint} lacks {missing or 'verification_uri'}"
            )
        return body

    def poll(self, endpoint: str, device_code: str) -> dict[str, Any]:
        """One token request for the device code; raises ``AuthorizationPending`` while undecided."""
        return self._token_request(
            endpoint,
            lambda: self._session.fetch_token(
                endpoint, grant_type=DEVICE_CODE_GRANT, device_code=device_code, verify=self._verify
            ),
        )

    def refresh(self, endpoint: str, refresh_token: str) -> dict[str, Any]:
        return self._token_request(
            endpoint, lambda: self._session.refresh_token(endpoint, refresh_token=refresh_token, verify=self._verify)
        )

    def revoke(self, endpoint: str, token: str, hint: str) -> None:
        response = self._call(
            endpoint,
            lambda: self._session.revoke_token(endpoint, token=token, token_type_hint=hint, verify=self._verify),
        )
        if response.status_code >= 400:
            raise ServerError(f"the revocation endpoint {endpoint} answered HTTP {response.status_code}")

    def _token_request(self, endpoint: str, send: Callable[[], Any]) -> dict[str, Any]:
        try:
            token = self._call(endpoint, send)
        except OAuthError as exc:
            _raise_oauth(str(exc.error), exc.description, endpoint)
        except ValueError as exc:
            raise ServerError(
                f"the token endpoint {endpoint} did not answer with a JSON object", transient=True
            ) from exc
        # Authlib keeps the last token on the session; we keep tokens ourselves.
        self._session.token = None
        if not isinstance(token.get("access_token"), str) or not token["access_token"]:
            raise ServerError(f"the token endpoint {endpoint} answered without an access_token")
        return dict(token)

    def _call(self, endpoint: str, send: Callable[[], Any]) -> Any:
        try:
            return send()
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "an error"
            raise ServerError(f"{endpoint} answered HTTP {status}", transient=True) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ServerError(f"cannot reach the authorization server at {endpoint}", transient=True) from exc


def _raise_oauth(error: str, description: Any, endpoint: str) -> NoReturn:
    if error in ("authorization_pending", "slow_down"):
        raise AuthorizationPending(slow=error == "slow_down")
    cls, message = _TERMINAL.get(error, (AuthorizationError, f"the authorization server refused ({error})"))
    detail = f": {description}" if description else ""
    raise cls(f"{message}{detail}", error=error)


def _json_object(response: requests.Response, endpoint: str) -> dict[str, Any]:
    if response.status_code >= 500:
        raise ServerError(f"{endpoint} answered HTTP {response.status_code}", transient=True)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ServerError(f"{endpoint} answered HTTP {response.status_code} without a JSON object", transient=True)
    return body
