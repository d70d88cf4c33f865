"""The only module that talks to Authlib: token requests in, our types and errors out.

Authlib's requests ``OAuth2Session`` builds and authenticates every request (public clients
send ``client_id``; confidential ones use the method the caller picks, for revocation too).
The device authorization request (RFC 8628 §3.1) has no Authlib helper, so it is a plain POST
on the same session with Authlib's client authentication attached.

Every exchange goes through ``BoundedAdapter`` (outbound check, no redirects, size cap, total
deadline) and ends at one boundary: what comes back is a checked dict or a ``DeviceAuthError``
whose text has no secret in it.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import traceback
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError

from ._bounded import BoundedAdapter, failure_reason
from ._exceptions import (
    AccessDenied,
    AuthorizationError,
    AuthorizationPending,
    DeviceAuthError,
    DeviceCodeExpired,
    ServerError,
    TokenRejected,
)
from ._redact import redact, secret_forms
from ._transport import check_outbound, safe_origin

__all__ = ["AUTH_METHODS", "DEVICE_CODE_GRANT", "OAuthClient"]

log = logging.getLogger("deviceauth.oauth")

_T = TypeVar("_T")

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
# The bare media type: strict servers (oauthlib) compare it exactly and refuse ";charset=UTF-8".
_FORM_HEADERS = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
# Only what BoundedAdapter can decode with a bounded output (no brotli/zstd surprises).
_ACCEPT_ENCODING = "gzip, deflate"
_NUMBERS = ("expires_in", "refresh_expires_in", "interval")
_TOKEN_STRINGS = ("access_token", "refresh_token", "id_token", "token_type", "scope")
_MAX_ERROR_CODE = 64
_REMEMBERED_SECRETS = 32
_SECRET_FIELDS = ("access_token", "refresh_token", "id_token", "device_code")


_TERMINAL: dict[str, tuple[type[AuthorizationError], str]] = {
    "access_denied": (AccessDenied, "the sign-in request was denied"),
    "expired_token": (DeviceCodeExpired, "the sign-in code expired before it was approved"),
    "invalid_grant": (TokenRejected, "the server rejected the refresh token (expired, revoked or already used)"),
    "invalid_scope": (
        AuthorizationError,
        "the server refused the requested scope; pass the scopes this client may ask for "
        "(scope=... in Python, --scope on the command line)",
    ),
}
_PENDING = ("authorization_pending", "slow_down")
_UNAVAILABLE = ("temporarily_unavailable", "server_error")


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
        if token_endpoint_auth_method is not None and token_endpoint_auth_method not in AUTH_METHODS:
            raise ValueError(
                f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)} (or None), "
                f"not {token_endpoint_auth_method!r}"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout):
            raise ValueError(f"timeout must be a finite number of seconds, not {timeout!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be more than 0 seconds, not {timeout!r}")
        method = token_endpoint_auth_method or ("client_secret_basic" if client_secret else "none")
        if method != "none" and not client_secret:
            raise ValueError(f"token_endpoint_auth_method={method!r} needs a client_secret")
        self._client_id = client_id
        self._secret = client_secret
        self._method = method
        # Secrets this client sent or received lately: a server may echo any of them, not only the
        # one the current exchange carries (a poll's error text quoting an earlier refresh token).
        self._seen: collections.deque[str] = collections.deque(maxlen=_REMEMBERED_SECRETS)
        self._session = OAuth2Session(
            client_id=client_id,
            client_secret=client_secret,
            token_endpoint_auth_method=method,
            # Authlib would use Basic for revocation whenever there is a secret; the server expects ours.
            revocation_endpoint_auth_method=method,
            default_timeout=timeout,
        )
        adapter = BoundedAdapter(deadline=timeout)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers["Accept-Encoding"] = _ACCEPT_ENCODING
        for hook in ("access_token_response", "refresh_token_response"):
            self._session.register_compliance_hook(hook, _checked_token_response)
        # Passed on every call: requests lets REQUESTS_CA_BUNDLE override a session-level verify.
        self._verify = verify
        self.timeout = timeout

    def get(self, url: str) -> requests.Response:
        """A plain GET on the same connection pool (for discovery), without any token.

        Any failure is a ``ServerError`` (transient for network trouble); the response it returns
        has been read whole, within the size cap and the deadline, and was not a redirect.
        """
        check_outbound(url)
        shown = redact(url.partition("?")[0])
        try:
            response: requests.Response = self._session.get(
                url,
                withhold_token=True,
                timeout=self.timeout,
                verify=self._verify,
                allow_redirects=False,
                headers={"Accept": "application/json"},
            )
        except DeviceAuthError:
            raise
        except requests.RequestException as exc:
            raise ServerError(
                f"cannot reach the authorization server at {shown}: {failure_reason(exc)}", transient=_retryable(exc)
            ) from self._safe_cause(exc)
        except Exception as exc:
            raise ServerError(f"GET {shown} failed ({type(exc).__name__})") from self._safe_cause(exc)
        return response

    def discover(self, issuer: str) -> dict[str, Any]:
        """The issuer's checked metadata (``_discovery.discover`` over this client's connections).

        Discovery sends no secret, but a server's text in its errors may still echo one the
        client holds: the message is redacted like every other exchange's.
        """
        from ._discovery import discover

        try:
            return discover(self.get, issuer)
        except DeviceAuthError as exc:
            secrets = self._secrets()
            if not any(secret in exc.message for secret in secrets):
                raise
            clean = type(exc)(redact(exc.message, secrets, limit=len(exc.message)), **exc._details())
            raise clean from None

    def request_device_code(self, endpoint: str, scope: str | None) -> dict[str, Any]:
        """The device authorization request (RFC 8628 §3.1): a checked response with the codes."""
        data = {"scope": scope} if scope else {}
        if self._method == "client_secret_basic":
            # Some servers (oauthlib) want client_id in the body even when Basic authenticates.
            data["client_id"] = self._client_id
        auth = self._session.client_auth(self._method)

        def send() -> dict[str, Any]:
            response = self._session.post(
                endpoint,
                data=data,
                auth=auth,
                headers=dict(_FORM_HEADERS),
                timeout=self.timeout,
                verify=self._verify,
                allow_redirects=False,
            )
            body = _json_object(response, endpoint)
            if "error" in body:
                raise OAuthError(error=body["error"], description=body.get("error_description"))
            return _checked_device_response(body, endpoint)

        body = self._exchange(endpoint, (), send)
        self._remember(body)
        return body

    def poll(self, endpoint: str, device_code: str) -> dict[str, Any]:
        """One token request for the device code; raises ``AuthorizationPending`` while undecided."""
        return self._token_request(
            endpoint,
            device_code,
            lambda: self._session.fetch_token(
                endpoint,
                grant_type=DEVICE_CODE_GRANT,
                device_code=device_code,
                headers=dict(_FORM_HEADERS),
                timeout=self.timeout,
                verify=self._verify,
            ),
            polling=True,
        )

    def refresh(self, endpoint: str, refresh_token: str) -> dict[str, Any]:
        """A refresh-token grant (also how an offline token is redeemed)."""
        return self._token_request(
            endpoint,
            refresh_token,
            lambda: self._session.refresh_token(
                endpoint,
                refresh_token=refresh_token,
                headers=dict(_FORM_HEADERS),
                timeout=self.timeout,
                verify=self._verify,
            ),
        )

    def revoke(self, endpoint: str, token: str, hint: str) -> None:
        """Revoke one token (RFC 7009); any answer but 2xx is a ``ServerError``."""

        def send() -> None:
            response = self._session.revoke_token(
                endpoint,
                token=token,
                token_type_hint=hint,
                headers=dict(_FORM_HEADERS),
                timeout=self.timeout,
                verify=self._verify,
            )
            status = response.status_code
            if not 200 <= status < 300:
                code = _error_code(response)
                detail = f" ({redact(code, self._secrets(), limit=_MAX_ERROR_CODE)})" if code else ""
                raise ServerError(
                    f"the revocation endpoint {safe_origin(endpoint)} answered HTTP {status}{detail}; "
                    "the token may still be valid at the server",
                    transient=status >= 500 or status == 429,
                )

        self._exchange(endpoint, (token,), send)

    # -- one boundary for every exchange --------------------------------------------------------

    def _token_request(
        self, endpoint: str, secret: str, send: Callable[[], Any], *, polling: bool = False
    ) -> dict[str, Any]:
        try:
            token = self._exchange(endpoint, (secret,), send, polling=polling)
        finally:
            # Authlib keeps the last token on the session; we keep tokens ourselves.
            self._session.token = None
        self._remember(token)
        return dict(token)

    def _exchange(self, endpoint: str, secrets: Iterable[str], send: Callable[[], _T], *, polling: bool = False) -> _T:
        check_outbound(endpoint)
        for secret in secrets:
            if secret and secret not in self._seen:
                self._seen.append(secret)
        try:
            return send()
        except ServerError as exc:
            if exc.url is None:  # errors say where: the origin, never a path or credentials
                exc.url = safe_origin(endpoint)
            raise
        except DeviceAuthError:
            raise
        except Exception as exc:
            failure, cause = self._translate(exc, endpoint, polling)
        # Raised here, outside the except block, so that an unsafe original is not even kept as
        # ``__context__`` (debuggers and error trackers read it); a safe one is chained on purpose.
        if cause is None:
            raise failure
        raise failure from cause

    def _translate(self, exc: Exception, endpoint: str, polling: bool) -> tuple[Exception, BaseException | None]:
        """Our error for whatever Authlib or requests raised, and the original if it is safe to chain."""
        where = safe_origin(endpoint)
        if isinstance(exc, OAuthError):
            # Never chained: Authlib's own message carries the server's text, unredacted.
            return _oauth_error(exc.error, exc.description, self._secrets(), polling), None
        if isinstance(exc, requests.HTTPError):
            status = exc.response.status_code if exc.response is not None else 0
            failure = ServerError(
                f"{where} answered HTTP {status}", url=where, transient=status >= 500 or status in (408, 429)
            )
        elif isinstance(exc, requests.RequestException):
            failure = ServerError(
                f"cannot reach the authorization server at {where} ({failure_reason(exc)})",
                url=where,
                transient=_retryable(exc),
            )
        else:  # whatever else Authlib or a garbled answer raises: typed, without server text
            failure = ServerError(f"{where} gave an answer deviceauth cannot use ({type(exc).__name__})", url=where)
        return failure, self._safe_cause(exc)

    def _safe_cause(self, exc: BaseException) -> BaseException | None:
        """``exc`` to chain for debugging, unless its rendering (a traceback prints it) holds a secret."""
        text = "".join(traceback.format_exception(exc))
        return None if any(secret in text for secret in self._secrets()) else exc

    def _secrets(self, *secrets: str | None) -> list[str]:
        return secret_forms([*secrets, *self._seen, self._secret], client_id=self._client_id)

    def _remember(self, answer: Any) -> None:
        for name in _SECRET_FIELDS:
            value = answer.get(name)
            if isinstance(value, str) and value and value not in self._seen:
                self._seen.append(value)


def _oauth_error(error: Any, description: Any, secrets: list[str], polling: bool) -> Exception:
    code = error if isinstance(error, str) else None
    if code in _PENDING and polling:
        return AuthorizationPending(slow=code == "slow_down")
    shown = redact(error, secrets, limit=_MAX_ERROR_CODE)
    detail = f": {redact(description, secrets)}" if description else ""
    if code in _PENDING:
        message = f"the authorization server answered {shown} outside device-code polling{detail}"
        return ServerError(message, transient=True, error=shown)
    if code in _UNAVAILABLE:
        return ServerError(f"the authorization server is unavailable ({shown}){detail}", transient=True, error=shown)
    cls, message = _TERMINAL.get(code or "", (AuthorizationError, f"the authorization server refused ({shown})"))
    return cls(f"{message}{detail}", error=shown)


def _checked_token_response(response: requests.Response) -> requests.Response:
    """Authlib compliance hook: only a clean JSON object reaches Authlib's token parsing."""
    url = response.url or ""
    body = _json_object(response, url)
    if "error" in body:
        return response  # Authlib raises OAuthError, which the exchange boundary translates
    for name in _TOKEN_STRINGS:
        if name in body and not isinstance(body[name], str):
            raise ServerError(f"the token endpoint {safe_origin(url)} answered with a non-string {name}")
    if not body.get("access_token"):
        raise ServerError(f"the token endpoint {safe_origin(url)} answered without an access_token")
    body.pop("expires_at", None)  # ours come from expires_in; Authlib would int() whatever this is
    _clean_numbers(body)
    response._content = json.dumps(body).encode()
    return response


def _checked_device_response(body: dict[str, Any], endpoint: str) -> dict[str, Any]:
    where = safe_origin(endpoint)
    missing = [name for name in ("device_code", "user_code") if not body.get(name)]
    if missing or not (body.get("verification_uri") or body.get("verification_url")):
        raise ServerError(f"the device authorization response from {where} lacks {missing or 'verification_uri'}")
    for name in ("device_code", "user_code", "verification_uri", "verification_url"):
        if name in body and not isinstance(body[name], str):
            raise ServerError(f"the device authorization response from {where} has a non-string {name}")
    if not isinstance(body.get("verification_uri_complete", ""), str):
        del body["verification_uri_complete"]
    _clean_numbers(body)
    return body


def _clean_numbers(body: dict[str, Any]) -> None:
    """Keep lifetimes and intervals only as finite floats: 1e400, 10**400, [1] or "soon" are dropped."""
    for name in _NUMBERS:
        if name in body:
            number = _finite(body[name])
            if number is None:
                log.debug("ignoring an unusable %s in the server's answer", name)
                del body[name]
            else:
                body[name] = number


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _json_object(response: requests.Response, url: str) -> dict[str, Any]:
    """The body as a JSON object, or a ``ServerError`` (transient where a retry can help)."""
    status = response.status_code
    where = safe_origin(url)
    if status >= 500:
        raise ServerError(f"{where} answered HTTP {status}", transient=True)
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):  # RecursionError: a 100,000-deep array
        body = None
    if not isinstance(body, dict):
        # A body cut short reads as garbage too; during polling that deserves another try.
        raise ServerError(
            f"{where} answered HTTP {status} without a JSON object", transient=status < 300 or status in (408, 429)
        )
    return body


def _error_code(response: requests.Response) -> str | None:
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    return str(body["error"]) if isinstance(body, dict) and isinstance(body.get("error"), str) else None


def _retryable(exc: requests.RequestException) -> bool:
    """Network trouble and bodies cut short are worth another try; a certificate or URL problem is not."""
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    return isinstance(
        exc,
        requests.ConnectionError
        | requests.Timeout
        | requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError,
    )
