"""The OAuth side of the embedded server: Authlib's server classes, given our memory (``_store``).

Authlib provides the protocol (client authentication, grant validation, RFC 8628 and 7009
error codes); this module answers its questions (which client, which device code, which
refresh token) and records what it issues. Authlib's framework integrations wrap a Flask or
Django request in an ``OAuth2Request`` subclass; ``FormRequest`` does the same for the
already-parsed form of a plain ``http.server`` request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidGrantError
from authlib.oauth2.rfc6749.grants import RefreshTokenGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint, DeviceCodeGrant
from authlib.oauth2.rfc8628.errors import SlowDownError

from ._models import SCOPES, AccessToken, Client, DeviceRecord, RefreshToken, new_secret
from ._store import Store

__all__ = ["FormRequest", "OAuthServer", "Reply"]

Reply = tuple[int, dict[str, Any], list[tuple[str, str]]]
_CLIENT_AUTH = ["client_secret_basic", "client_secret_post", "none"]


class FormRequest(OAuth2Request):  # type: ignore[misc]  # Authlib is untyped
    """An ``OAuth2Request`` over a form body and query already parsed by the HTTP layer."""

    def __init__(self, method: str, uri: str, headers: Any, form: Mapping[str, str], args: Mapping[str, str]) -> None:
        super().__init__(method, uri, headers=headers)
        self._form = dict(form)
        self._args = dict(args)
        self.payload = BasicOAuth2Payload({**self._args, **self._form})

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return self._args


class OAuthServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's ``AuthorizationServer`` with the device and refresh grants and revocation."""

    def __init__(self, store: Store, verification_uri: str) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.store = store
        self.register_token_generator("default", self._generate_token)
        self.register_grant(_DeviceCodeGrant)
        self.register_grant(_RefreshTokenGrant)
        self.register_endpoint(_DeviceAuthorizationEndpoint(self, store, verification_uri))
        self.register_endpoint(_RevocationEndpoint(self))

    # -- what Authlib asks a framework integration for --------------------------------------------

    def query_client(self, client_id: str) -> Client | None:
        return self.store.client(client_id)

    def create_oauth2_request(self, request: FormRequest) -> FormRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Reply:
        return status, dict(body or {}), list(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass  # no signal system; the store counts what matters

    # -- tokens -----------------------------------------------------------------------------------

    def _generate_token(
        self,
        grant_type: str,
        client: Client,
        user: str | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        scope = client.get_allowed_scope(scope)
        token: dict[str, Any] = {
            "access_token": new_secret(),
            "token_type": "Bearer",
            "expires_in": expires_in or self.store.config.access_ttl,
        }
        if include_refresh_token:
            token["refresh_token"] = new_secret()
        if scope:
            token["scope"] = scope
        return token

    def save_token(self, token: dict[str, Any], request: FormRequest) -> None:
        """Record the tokens of a device login or a refresh (and decorate the response as Keycloak does)."""
        store = self.store
        old: RefreshToken | None = request.refresh_token
        if old is not None:
            family = old.family
        else:
            record: DeviceRecord = request.credential
            record.status = "consumed"
            family = store.new_family(record.client_id, str(request.user), str(token.get("scope", "")))
        store.issue_access(family, token["access_token"], int(token["expires_in"]))
        holder = store.issue_refresh(family, token["refresh_token"]) if "refresh_token" in token else old
        if store.config.mode == "keycloak":
            # Keycloak reports the remaining life of the refresh token the client now holds.
            remaining = 0 if holder is None else max(0, holder.expires_at - int(store.clock()))
            token["refresh_expires_in"] = remaining
            token["not-before-policy"] = 0


class _DeviceAuthorizationEndpoint(DeviceAuthorizationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = _CLIENT_AUTH

    def __init__(self, server: OAuthServer, store: Store, verification_uri: str) -> None:
        super().__init__(server)
        self.store = store
        self.verification_uri = verification_uri
        self.EXPIRES_IN = store.config.device_ttl
        self.INTERVAL = store.config.interval

    def get_verification_uri(self) -> str:
        return self.verification_uri

    def save_device_credential(self, client_id: str, scope: str | None, data: dict[str, Any]) -> None:
        client = self.store.client(client_id)
        allowed = client.get_allowed_scope(scope) if client else ""
        now = self.store.clock()
        record = DeviceRecord(
            device_code=data["device_code"],
            user_code=data["user_code"],
            client_id=client_id,
            scope=allowed,
            created_at=now,
            expires_at=now + int(data["expires_in"]),
            interval=float(data["interval"]),
        )
        self.store.add_device(record)


class _DeviceCodeGrant(DeviceCodeGrant):  # type: ignore[misc]
    @property
    def store(self) -> Store:
        store: Store = self.server.store
        return store

    def query_device_credential(self, device_code: str) -> DeviceRecord | None:
        with self.store.lock:
            return self.store.devices.get(device_code)

    def validate_device_credential(self, credential: DeviceRecord) -> str:
        store, config = self.store, self.store.config
        if credential.status == "consumed":
            raise InvalidGrantError("The device code was already used.")
        now = store.clock()
        credential.polls += 1
        previous, credential.last_poll = credential.last_poll, now
        # Forced slow_down comes first, even for an approved code, as the Node test server's does.
        if credential.polls <= config.slow_down:
            raise SlowDownError()
        self._too_soon = config.enforce_interval and previous is not None and now - previous < credential.interval
        store.auto_approve_due(credential)
        user: str = super().validate_device_credential(credential)
        return user

    def query_user_grant(self, user_code: str) -> tuple[str, bool] | None:
        record = self.store.find_user_code(user_code)
        if record is None or record.status == "pending":
            return None
        return str(record.subject or ""), record.status == "approved"

    def should_slow_down(self, credential: DeviceRecord) -> bool:
        if getattr(self, "_too_soon", False):
            credential.interval += 5  # RFC 8628 section 3.5: for this and all later polls
            return True
        return False


class _RefreshTokenGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = _CLIENT_AUTH

    @property
    def store(self) -> Store:
        store: Store = self.server.store
        return store

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        store = self.store
        token = store.find_refresh(refresh_token)
        if token is None:
            return None
        if token.consumed:
            # A rotated-away token came back: a copy leaked, or two clients raced. Either way
            # the login is no longer trustworthy (what Keycloak's "Revoke Refresh Token" does).
            if store.config.reuse_detection and not token.family.revoked:
                token.family.revoke()
                store.count("reuse_detected")
            return None
        return token if token.usable(store.clock()) else None

    def authenticate_user(self, refresh_token: RefreshToken) -> str:
        return refresh_token.family.subject

    def issue_token(self, user: str, refresh_token: RefreshToken) -> dict[str, Any]:
        scope = self.request.payload.scope or refresh_token.get_scope()
        token: dict[str, Any] = self.generate_token(
            user=user, scope=scope, include_refresh_token=self.store.config.rotate_refresh_tokens
        )
        return token

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        if self.store.config.rotate_refresh_tokens:
            refresh_token.consumed = True


class _RevocationEndpoint(RevocationEndpoint):  # type: ignore[misc]
    # Keycloak lets public clients revoke their own tokens with just their client_id.
    CLIENT_AUTH_METHODS = _CLIENT_AUTH

    def query_token(self, token_string: str, token_type_hint: str | None) -> AccessToken | RefreshToken | None:
        store: Store = self.server.store
        access, refresh = store.find_access(token_string), store.find_refresh(token_string)
        if token_type_hint == "refresh_token":  # noqa: S105 (a hint name)
            return refresh or access
        return access or refresh

    def revoke_token(self, token: AccessToken | RefreshToken, request: FormRequest) -> None:
        if isinstance(token, RefreshToken):
            token.family.revoke()  # RFC 7009 section 2.1: the grant's access tokens go too
        else:
            token.revoked = True
