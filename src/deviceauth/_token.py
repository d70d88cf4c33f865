"""Tokens as the rest of deviceauth sees them: immutable, with absolute expiry times."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Token", "fingerprint"]

# Without a leeway the first request after expiry would fail; without a cap on it a token
# that lives 20 s would be "about to expire" on every call and refresh every time.
DEFAULT_LEEWAY = 60.0
DEFAULT_LEEWAY_FRACTION = 0.25
MAX_LEEWAY_FRACTION = 0.5
# Servers write `exp` in whole seconds (Keycloak, oidc-provider), so a token can die up to a
# second before `expires_in` says; the default margin covers that too.
EXPIRY_GRANULARITY = 1.0
# Servers that omit expires_in: assume a short life rather than trusting the token forever.
ASSUMED_LIFETIME = 300.0


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible name for a token, safe to log."""
    return hashlib.sha256(secret.encode()).hexdigest()[:10]


@dataclass(frozen=True, slots=True)
class Token:
    """An access token with its refresh token and expiry times (seconds since the epoch)."""

    access_token: str = field(repr=False)
    expires_at: float
    obtained_at: float
    token_type: str = "Bearer"  # noqa: S105
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_at: float | None = None
    id_token: str | None = field(default=None, repr=False)
    scope: str | None = None

    @classmethod
    def from_response(cls, response: Mapping[str, Any], now: float, previous: Token | None = None) -> Token:
        """Build a token from a token-endpoint response received at ``now``.

        A refresh response without a refresh token keeps ``previous``'s (RFC 6749 §6).
        """
        expires_in = _seconds(response.get("expires_in"))
        refresh_expires_in = _seconds(response.get("refresh_expires_in"))
        refresh_token = response.get("refresh_token")
        refresh_expires_at = now + refresh_expires_in if refresh_expires_in else None
        if not refresh_token and previous is not None:
            refresh_token = previous.refresh_token
            refresh_expires_at = previous.refresh_expires_at
        return cls(
            access_token=str(response["access_token"]),
            token_type=str(response.get("token_type") or "Bearer"),
            expires_at=now + (expires_in if expires_in is not None else ASSUMED_LIFETIME),
            obtained_at=now,
            refresh_token=str(refresh_token) if refresh_token else None,
            refresh_expires_at=refresh_expires_at,
            id_token=response.get("id_token") or (previous.id_token if previous else None),
            scope=response.get("scope") or (previous.scope if previous else None),
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Token:
        return cls(
            access_token=str(data["access_token"]),
            token_type=str(data.get("token_type", "Bearer")),
            expires_at=float(data["expires_at"]),
            obtained_at=float(data.get("obtained_at", data["expires_at"])),
            refresh_token=data.get("refresh_token"),
            refresh_expires_at=_optional_float(data.get("refresh_expires_at")),
            id_token=data.get("id_token"),
            scope=data.get("scope"),
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at,
            "obtained_at": self.obtained_at,
        }
        optional = {
            "refresh_token": self.refresh_token,
            "refresh_expires_at": self.refresh_expires_at,
            "id_token": self.id_token,
            "scope": self.scope,
        }
        data.update({key: value for key, value in optional.items() if value is not None})
        return data

    def refresh_due_at(self, leeway: float | None) -> float:
        """When to stop using this access token and get a new one."""
        lifetime = max(self.expires_at - self.obtained_at, 0.0)
        if leeway is None:
            leeway = min(DEFAULT_LEEWAY, lifetime * DEFAULT_LEEWAY_FRACTION) + EXPIRY_GRANULARITY
        return self.expires_at - min(leeway, lifetime * MAX_LEEWAY_FRACTION)

    def can_refresh(self, now: float) -> bool:
        if not self.refresh_token:
            return False
        # Whole-second expiry times again: Keycloak's session can end up to a second before
        # refresh_expires_in says, and a refresh sent then only earns "Session not active".
        return self.refresh_expires_at is None or now < self.refresh_expires_at - EXPIRY_GRANULARITY

    def without_refresh_token(self) -> Token:
        return replace(self, refresh_token=None, refresh_expires_at=None)


def _seconds(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
