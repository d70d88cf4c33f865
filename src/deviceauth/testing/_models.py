"""What the embedded server remembers: clients, device codes, and token families.

The objects also answer the questions Authlib's server classes ask of them
(``ClientMixin``, ``TokenMixin``, ``DeviceCredentialMixin``), so the grant code in
``_authlib`` needs no adapters. A *family* is one login: every access and refresh token it
ever produced, so that reuse of a rotated refresh token can revoke all of them at once.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DEVICE_GRANT", "SCOPES", "AccessToken", "Client", "DeviceRecord", "Family", "RefreshToken", "new_secret"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPES = ("openid", "offline_access", "profile", "email", "api")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Client:
    """An OAuth client registered at the embedded server.

    Without a secret it is public (``none``); with one it must authenticate with
    ``client_secret_basic`` or ``client_secret_post`` (both accepted, as Keycloak does).
    """

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    name: str = ""

    @property
    def public(self) -> bool:
        return self.client_secret is None

    # -- Authlib ClientMixin -------------------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        return " ".join(s for s in scope.split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        if self.client_secret is None:
            return False
        return hmac.compare_digest(self.client_secret.encode(), client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in (DEVICE_GRANT, "refresh_token")


@dataclass(eq=False)
class DeviceRecord:
    """One device authorization and where it stands (Authlib's ``DeviceCredentialMixin``)."""

    device_code: str = field(repr=False)
    user_code: str
    client_id: str
    scope: str
    created_at: float
    expires_at: float
    interval: float  # grows by 5 s at each slow_down for polling too soon
    status: Literal["pending", "approved", "denied", "consumed"] = "pending"
    subject: str | None = None
    polls: int = 0
    last_poll: float | None = None

    def get_client_id(self) -> str:
        return self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_user_code(self) -> str:
        return self.user_code

    def is_expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


@dataclass(eq=False)
class Family:
    """One login and everything issued from it."""

    family_id: str
    client_id: str
    subject: str
    scope: str
    started_at: float
    session_ends_at: float | None  # the session maximum, if any
    revoked: bool = False
    access: list[AccessToken] = field(default_factory=list, repr=False)
    refresh: list[RefreshToken] = field(default_factory=list, repr=False)

    def revoke(self) -> None:
        self.revoked = True
        for token in self.access:
            token.revoked = True
        for rt in self.refresh:
            rt.revoked = True


@dataclass(eq=False)
class _Issued:
    value: str = field(repr=False)
    family: Family = field(repr=False)
    issued_at: int
    expires_at: int
    revoked: bool = False

    # -- Authlib TokenMixin --------------------------------------------------------------------

    def check_client(self, client: Client) -> bool:
        return self.family.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.family.scope

    def get_expires_in(self) -> int:
        return self.expires_at - self.issued_at

    def is_expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked or self.family.revoked

    def get_user(self) -> str:
        return self.family.subject

    def usable(self, now: float) -> bool:
        return not self.is_revoked() and not self.is_expired(now)


@dataclass(eq=False)
class AccessToken(_Issued):
    kind: Literal["access_token"] = "access_token"


@dataclass(eq=False)
class RefreshToken(_Issued):
    kind: Literal["refresh_token"] = "refresh_token"
    consumed: bool = False  # rotated away: presenting it again is reuse
