"""What defines an identity and how to reach its server, checked once at construction.

``Settings`` is plain, frozen data: it pickles into worker processes and is the only thing a
``DeviceAuth`` carries there. ``Identity`` is the part that names a session in a token store.
Bad arguments fail here, as ``ValueError``/``TypeError`` naming the argument, instead of deep
inside an HTTP library on first use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ._flow import DeviceCode

__all__ = ["AUTH_METHODS", "Identity", "Interaction", "Settings", "identity_key", "normalize_scope"]

AUTH_METHODS = frozenset({"client_secret_basic", "client_secret_post", "none"})
ENDPOINT_NAMES = ("token_endpoint", "device_authorization_endpoint", "revocation_endpoint")


def normalize_scope(scope: str | Sequence[str] | None) -> str | None:
    """One spelling per set of scopes: sorted, deduplicated, space-separated (None when empty)."""
    if scope is None:
        return None
    parts = scope.split() if isinstance(scope, str) else list(scope)
    if not all(isinstance(part, str) and part and not any(c.isspace() for c in part) for part in parts):
        raise ValueError("scope must be a space-separated string or a list of scope names without spaces")
    return " ".join(sorted(set(parts))) or None


def identity_key(issuer: str, client_id: str, scope: str | None) -> str:
    """The store key of an identity: issuer, client id and scope, unambiguous for any client id.

    Issuers and scopes cannot contain spaces; a client id may, so its spaces (and ``%``) are
    escaped. Client ids without either keep the key earlier versions wrote.
    """
    client = client_id.replace("%", "%25").replace(" ", "%20")
    return f"{issuer.rstrip('/')} {client} {scope or ''}".rstrip()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the tokens belong to: one session at one issuer for one client and scope."""

    issuer: str
    client_id: str
    scope: str | None

    @property
    def key(self) -> str:
        return identity_key(self.issuer, self.client_id, self.scope)


@dataclass(frozen=True)
class Settings:
    """Everything that defines an identity and how to reach its server; pickles as plain data."""

    issuer: str
    client_id: str
    scope: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    token_endpoint_auth_method: str | None = None
    leeway: float | None = None
    timeout: float = 30.0
    lock_timeout: float | None = None
    verify: bool | str = True
    endpoints: tuple[tuple[str, str], ...] = ()
    offline_token: str | None = field(default=None, repr=False)
    store_offline_token: bool = False
    max_code_life: float | None = None  # None: the flow's own cap (``_flow.MAX_CODE_LIFE``)

    def __post_init__(self) -> None:
        # One spelling of the issuer everywhere it is a key (store entries, server metadata).
        object.__setattr__(self, "issuer", _checked_issuer(self.issuer))
        _require_text("client_id", self.client_id)
        if self.client_secret is not None:
            _require_text("client_secret", self.client_secret)
        if self.offline_token is not None:
            _require_text("offline_token", self.offline_token)
        method = self.token_endpoint_auth_method
        if method is not None and method not in AUTH_METHODS:
            raise ValueError(f"token_endpoint_auth_method must be one of {', '.join(sorted(AUTH_METHODS))}")
        if self.leeway is not None:
            _require_number("leeway", self.leeway, minimum=0.0, inclusive=True)
        _require_number("timeout", self.timeout, minimum=0.0, inclusive=False)
        if self.max_code_life is not None:
            _require_number("max_code_life", self.max_code_life, minimum=0.0, inclusive=False)
        if self.lock_timeout is not None:
            _require_number("lock_timeout", self.lock_timeout, minimum=0.0, inclusive=True)
        for name, url in self.endpoints:
            if name not in ENDPOINT_NAMES:
                raise ValueError(f"unknown endpoint {name}")
            _checked_url(name, url)

    @property
    def identity(self) -> Identity:
        return Identity(self.issuer, self.client_id, self.scope)

    @property
    def key(self) -> str:
        return identity_key(self.issuer, self.client_id, self.scope)


@dataclass(frozen=True)
class Interaction:
    """How this caller may reach a person when a login is needed."""

    interactive: bool | None = None  # None: decide when a login is needed (TTY or Jupyter)
    prompt: Callable[[DeviceCode], None] | None = None
    open_browser: bool | None = None


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    if not value or not value.isprintable():
        raise ValueError(f"{name} must be a non-empty string of printable characters")


def _require_number(name: str, value: object, *, minimum: float, inclusive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    low_ok = value >= minimum if inclusive else value > minimum
    if not math.isfinite(value) or not low_ok:
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, not {value!r}")


def _checked_url(name: str, url: object) -> str:
    _require_text(name, url)
    assert isinstance(url, str)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an absolute http(s) URL, not {url!r}")
    if "\\" in url or parts.username is not None or parts.password is not None:
        raise ValueError(f"{name} must not contain backslashes or user:password@")
    return url


def _checked_issuer(issuer: object) -> str:
    url = _checked_url("issuer", issuer).rstrip("/")
    parts = urlsplit(url)
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(
            "issuer must not have a query or a fragment (use the realm URL, e.g. https://host/realms/NAME)"
        )
    return url
