"""Tokens as the rest of deviceauth sees them: immutable, with absolute expiry times."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Token", "fingerprint", "valid_token_text"]

log = logging.getLogger("deviceauth")

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
# Lifetimes beyond this are not believed: a server bug, or a value meant to pin a token forever.
MAX_LIFETIME = 366 * 24 * 3600.0
# Keycloak JWTs with many roles reach a few KB; nothing legitimate comes near this.
MAX_TOKEN_LENGTH = 64 * 1024


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible name for a token, safe to log."""
    import hashlib  # loaded once, on the first log line or redaction that needs it

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
        Raises ``ValueError`` (naming the field, never its value) when a token is not a short
        string of visible characters: such a value would be refused by every HTTP library later,
        with the token in the error text.
        """
        access_token = _checked_token("access_token", response.get("access_token"))
        refresh_token = _optional_token("refresh_token", response.get("refresh_token"))
        expires_in = _seconds("expires_in", response.get("expires_in"))
        refresh_expires_in = _seconds("refresh_expires_in", response.get("refresh_expires_in"))
        refresh_expires_at = now + refresh_expires_in if refresh_expires_in is not None else None
        if refresh_token is None and previous is not None:
            refresh_token = previous.refresh_token
            refresh_expires_at = previous.refresh_expires_at
        id_token = _optional_token("id_token", response.get("id_token"), strict=False)
        return cls(
            access_token=access_token,
            token_type=_short_text(response.get("token_type")) or "Bearer",
            expires_at=now + (expires_in if expires_in is not None else ASSUMED_LIFETIME),
            obtained_at=now,
            refresh_token=refresh_token,
            refresh_expires_at=refresh_expires_at,
            id_token=id_token or (previous.id_token if previous else None),
            scope=_short_text(response.get("scope")) or (previous.scope if previous else None),
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Token:
        """A token as a store wrote it; ``TypeError``/``ValueError`` for anything else."""
        if not isinstance(data, Mapping):
            raise TypeError("a stored token must be an object")
        expires_at = _finite(data["expires_at"])
        return cls(
            access_token=_checked_token("access_token", data["access_token"]),
            token_type=_short_text(data.get("token_type")) or "Bearer",
            expires_at=expires_at,
            obtained_at=_finite(data.get("obtained_at", expires_at)),
            refresh_token=_optional_token("refresh_token", data.get("refresh_token")),
            refresh_expires_at=None if data.get("refresh_expires_at") is None else _finite(data["refresh_expires_at"]),
            id_token=_optional_token("id_token", data.get("id_token"), strict=False),
            scope=_short_text(data.get("scope")),
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


def valid_token_text(value: object) -> bool:
    """A token we can put in a header: a non-empty, bounded string of visible ASCII characters."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TOKEN_LENGTH
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def _checked_token(name: str, value: object) -> str:
    if not valid_token_text(value):
        raise ValueError(f"the {name} is not a string of at most {MAX_TOKEN_LENGTH} visible ASCII characters")
    assert isinstance(value, str)
    return value


def _optional_token(name: str, value: object, *, strict: bool = True) -> str | None:
    if value is None or value == "":
        return None
    if valid_token_text(value):
        assert isinstance(value, str)
        return value
    if strict:
        raise ValueError(f"the {name} is not a string of at most {MAX_TOKEN_LENGTH} visible ASCII characters")
    return None  # an unusable id token is dropped: we never send it


def _short_text(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= 4096 and value.isprintable():
        return value
    return None


def _finite(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError("not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _seconds(name: str, value: object) -> float | None:
    """A server's lifetime in seconds, or None when absent or unusable (said in the log)."""
    if value is None or value == "":
        return None
    try:
        seconds = _finite(value)
    except (TypeError, ValueError, OverflowError):
        log.warning("ignoring the server's %s: not a finite number", name)
        return None
    if seconds <= 0:
        # Keycloak sends refresh_expires_in 0 for offline tokens ("no expiry"); an access token's
        # expires_in <= 0 is a server bug, and a 401 will tell us if the token really is dead.
        if name == "expires_in":
            log.warning("the server's expires_in is %g s; assuming %g s", seconds, ASSUMED_LIFETIME)
        return None
    if seconds > MAX_LIFETIME:
        log.warning("the server's %s of %g s is beyond belief; using %g s", name, seconds, MAX_LIFETIME)
        return MAX_LIFETIME
    return seconds
