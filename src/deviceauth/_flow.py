"""The device authorization flow (RFC 8628 §3.1–3.5): ask for a code, show it, poll until answered."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._exceptions import DeviceCodeExpired, ServerError
from ._oauth import AuthorizationPending, OAuthClient

__all__ = ["DeviceCode", "run_device_flow"]

log = logging.getLogger("deviceauth.flow")

DEFAULT_INTERVAL = 5.0  # RFC 8628 §3.2
SLOW_DOWN_STEP = 5.0  # RFC 8628 §3.5
DEFAULT_EXPIRES_IN = 600.0
_MAX_BACKOFF = 60.0


@dataclass(frozen=True, slots=True)
class DeviceCode:
    """What the person needs to approve a login; handed to the ``prompt`` callback."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: float
    interval: float
    device_code: str = field(repr=False)

    @classmethod
    def from_response(cls, body: dict[str, Any], now: float) -> DeviceCode:
        return cls(
            user_code=str(body["user_code"]),
            # Google and some older servers spell it verification_url.
            verification_uri=str(body.get("verification_uri") or body["verification_url"]),
            verification_uri_complete=body.get("verification_uri_complete"),
            expires_at=now + _positive(body.get("expires_in"), DEFAULT_EXPIRES_IN),
            interval=_positive(body.get("interval"), DEFAULT_INTERVAL),
            device_code=str(body["device_code"]),
        )

    @property
    def url(self) -> str:
        """The best link to open: the one with the code filled in, when the server gives it."""
        return self.verification_uri_complete or self.verification_uri


def run_device_flow(
    client: OAuthClient,
    device_endpoint: str,
    token_endpoint: str,
    scope: str | None,
    *,
    show: Callable[[DeviceCode], None],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    on_started: Callable[[DeviceCode], None] | None = None,
) -> dict[str, Any]:
    """Run one device login and return the token response.

    Raises ``AccessDenied`` or ``DeviceCodeExpired`` when the person declines or waits too long;
    network errors and 5xx answers are retried with backoff until the code expires.
    """
    code = DeviceCode.from_response(client.request_device_code(device_endpoint, scope), clock())
    log.info("device login started; code expires in %.0f s", code.expires_at - clock())
    if on_started is not None:
        on_started(code)
    show(code)
    interval = code.interval
    backoff = 0.0
    while True:
        wait = max(interval, backoff)
        if clock() + wait >= code.expires_at:
            raise DeviceCodeExpired(
                "the sign-in code expired before it was approved; run the login again", error="expired_token"
            )
        sleep(wait)
        try:
            return client.poll(token_endpoint, code.device_code)
        except AuthorizationPending as pending:
            backoff = 0.0
            if pending.slow:
                interval += SLOW_DOWN_STEP
                log.debug("server asked to slow down; polling every %.0f s", interval)
        except ServerError as exc:
            if not exc.transient:
                raise
            backoff = min(max(backoff * 2, interval), _MAX_BACKOFF)
            log.warning("polling failed (%s); retrying in %.0f s", exc, backoff)


def _positive(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default
