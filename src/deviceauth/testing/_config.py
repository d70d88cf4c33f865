"""The embedded server's knobs, in one frozen dataclass (what ``AuthServer(**options)`` accepts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ._models import Client

__all__ = ["DEFAULT_CLIENTS", "ServerConfig"]

DEFAULT_CLIENTS = (
    Client("client-tools", name="Client tools (public)"),
    Client("confidential-client", "confidential-secret", name="Confidential client"),
)


@dataclass(frozen=True)
class ServerConfig:
    """How the server behaves; every field is an ``AuthServer`` keyword argument.

    :param mode: ``"plain"`` (issuer at the root, oidc-provider's paths) or ``"keycloak"``
        (issuer ``/realms/<realm>`` with Keycloak's ``/protocol/openid-connect/...`` paths and
        ``refresh_expires_in`` in token responses).
    :param access_ttl: / :param refresh_ttl: token lifetimes in whole seconds.
    :param session_max: seconds after the login when refreshing stops working (Keycloak's
        "SSO Session Max"); ``None`` for no limit.
    :param device_ttl: life of a device code; :param interval: the poll interval it announces.
    :param slow_down: answer the first N polls of each device code with ``slow_down``.
    :param enforce_interval: answer polls that come sooner than the interval with
        ``slow_down`` and add 5 s to that code's interval (RFC 8628 section 3.5).
    :param rotate_refresh_tokens: issue a new refresh token on each refresh;
        :param reuse_detection: then presenting a used one revokes the whole login.
    :param auto_approve: approve every pending code as ``auto_approve_user`` this many seconds
        after it was issued (``None``: only a person or the control surface approves).
    :param control: serve the ``/__test/...`` control surface (approve, counters, faults).
    """

    mode: Literal["plain", "keycloak"] = "plain"
    realm: str = "rrap"
    realm_prefix: str = ""  # "/auth" for Keycloak before version 17 (Provena's URLs)
    access_ttl: int = 60
    refresh_ttl: int = 3600
    session_max: int | None = None
    device_ttl: int = 600
    interval: int = 1
    slow_down: int = 0
    enforce_interval: bool = False
    rotate_refresh_tokens: bool = True
    reuse_detection: bool = True
    auto_approve: float | None = None
    auto_approve_user: str = "alice"
    oidc_discovery: bool = True
    device_flow: bool = True
    control: bool = True
    clients: tuple[Client, ...] = field(default=DEFAULT_CLIENTS)

    def __post_init__(self) -> None:
        if self.mode not in ("plain", "keycloak"):
            raise ValueError(f"mode must be 'plain' or 'keycloak', not {self.mode!r}")
        for name in ("access_ttl", "refresh_ttl", "device_ttl"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1 second")
        if self.interval < 0 or self.slow_down < 0:
            raise ValueError("interval and slow_down must not be negative")
        if self.session_max is not None and self.session_max < 1:
            raise ValueError("session_max must be at least 1 second (or None)")

    @property
    def issuer_path(self) -> str:
        return f"{self.realm_prefix}/realms/{self.realm}" if self.mode == "keycloak" else ""
