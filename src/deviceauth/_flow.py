"""The device authorization flow (RFC 8628 §3.1–3.5): ask for a code, check it, show it, poll until answered.

Everything the server says about the code is checked before it reaches a person or a browser,
because the prompt writes it to a terminal, a notebook and ``webbrowser.open``:

- ``user_code`` and the verification links are strings of bounded length with no control,
  invisible or direction-changing characters (a terminal escape, a carriage return or a bidi
  override could forge or hide what the person reads);
- links are absolute ``http(s)`` URLs without userinfo, written only with RFC 3986 characters;
- ``verification_uri_complete`` is kept only when it is on the same site as ``verification_uri``
  and carries the very user code that is shown, so the link cannot approve a different code;
- the code's life and the poll interval are clamped, so a server cannot make a login (which holds
  the cache lock) last for ever, or make us poll hundreds of times a second.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import unicodedata
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ._exceptions import AccessDenied, AuthorizationPending, DeviceCodeExpired, ServerError

__all__ = [
    "DEFAULT_EXPIRES_IN",
    "DEFAULT_INTERVAL",
    "MAX_CODE_LIFE",
    "MAX_INTERVAL",
    "MIN_INTERVAL",
    "DeviceCode",
    "Outcome",
    "WaitStatus",
    "clean_text",
    "run_device_flow",
    "web_url",
]

log = logging.getLogger("deviceauth.flow")

DEFAULT_INTERVAL = 5.0  # RFC 8628 §3.2
MIN_INTERVAL = 1.0
MAX_INTERVAL = 60.0
SLOW_DOWN_STEP = 5.0  # RFC 8628 §3.5
DEFAULT_EXPIRES_IN = 600.0  # when the server's expires_in is missing or unusable
MAX_CODE_LIFE = 1800.0  # a login holds the cache lock; other processes wait at most this long
MAX_USER_CODE = 64
MAX_URI = 2048
MAX_DEVICE_CODE = 8192  # sent back on every poll; real ones (even JWTs) are far shorter
_MAX_BACKOFF = 60.0
_FINAL_POLL_MARGIN = 1.0  # the last poll goes out this long before the code expires
_TIME_SLACK = 1e-3  # float sums of sleeps may fall an ulp short of the target

Outcome = Literal["approved", "denied", "expired", "cancelled", "failed"]

# RFC 3986 unreserved, reserved and '%': anything else (space, quotes, '<', '\\', control
# characters, non-ASCII look-alikes) has no business in a link we show or open unencoded.
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
# Right-to-left letters reorder the text around them on terminals that implement bidi.
_RTL = frozenset({"R", "AL", "RLE", "RLO", "LRE", "LRO", "PDF", "RLI", "LRI", "FSI", "PDI"})


@runtime_checkable
class WaitStatus(Protocol):
    """Internal: how the prompt follows the wait (the default prompt returns one; user prompts need not).

    ``tick(remaining)`` is called about every ``tick_every`` seconds with the seconds left on the
    code; ``done(outcome)`` once at the end, whatever the end is (Ctrl-C included).
    """

    tick_every: float

    def tick(self, remaining: float) -> None: ...

    def done(self, outcome: Outcome) -> None: ...


@dataclass(frozen=True, slots=True)
class DeviceCode:
    """What the person needs to approve a login; handed to the ``prompt`` callback.

    Built by deviceauth from the server's answer, its text fields are already checked: plain
    visible text of bounded length, links only ``http(s)``, and ``verification_uri_complete``
    (when not None) carries ``user_code``.
    """

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: float
    interval: float
    device_code: str = field(repr=False)

    @classmethod
    def from_response(
        cls,
        body: dict[str, Any],
        now: float,
        *,
        max_life: float = MAX_CODE_LIFE,
        source: str = "the device authorization response",
    ) -> DeviceCode:
        """Check and clamp a device authorization response; ``ServerError`` when it is unusable."""
        user_code = _user_code(body.get("user_code"), source)
        # Google and some older servers spell it verification_url.
        raw_uri = body.get("verification_uri")
        if raw_uri is None:
            raw_uri = body.get("verification_url")
        if raw_uri is None or raw_uri == "":
            raise ServerError(f"{source} lacks verification_uri")
        uri = _strip(raw_uri)
        problem = _url_problem(uri)
        if problem:
            raise ServerError(f"{source} has an unusable verification_uri ({problem})")
        assert isinstance(uri, str)
        if _origin(uri)[0] == "http" and not _loopback(uri):
            # Shown all the same (a proxy that forgot its https front is common), but the person
            # should know their password would travel in clear.
            log.warning("the server's verification page is plain http on a remote host; sign-in there is not encrypted")
        return cls(
            user_code=user_code,
            verification_uri=uri,
            verification_uri_complete=_complete_uri(body.get("verification_uri_complete"), uri, user_code),
            expires_at=now + _code_life(body.get("expires_in"), max_life),
            interval=_interval(body.get("interval")),
            device_code=_device_code(body.get("device_code"), source),
        )

    @property
    def url(self) -> str:
        """The best link to open: the one with the code filled in, when the server gives it."""
        return self.verification_uri_complete or self.verification_uri


class DeviceFlowClient(Protocol):
    """The two exchanges a device login needs (``_oauth.OAuthClient`` is the real one)."""

    def request_device_code(self, endpoint: str, scope: str | None) -> dict[str, Any]: ...

    def poll(self, endpoint: str, device_code: str) -> dict[str, Any]:
        """One token request; raises ``AuthorizationPending`` while the person has not answered."""
        ...


def run_device_flow(
    client: DeviceFlowClient,
    device_endpoint: str,
    token_endpoint: str,
    scope: str | None,
    *,
    show: Callable[[DeviceCode], WaitStatus | None],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    on_started: Callable[[DeviceCode], None] | None = None,
    max_code_life: float = MAX_CODE_LIFE,
) -> dict[str, Any]:
    """Run one device login and return the token response.

    Polls until the code expires, at least once, the last time just before expiry. Raises
    ``AccessDenied`` or ``DeviceCodeExpired`` when the person declines or waits too long;
    network errors, 5xx and garbled answers are retried with backoff until then. When ``show``
    returns a ``WaitStatus`` it hears how the wait goes, and how it ended.
    """
    if not max_code_life > 0:
        raise ValueError(f"max_code_life must be a positive number of seconds, not {max_code_life!r}")
    code = DeviceCode.from_response(
        client.request_device_code(device_endpoint, scope),
        clock(),
        max_life=max_code_life,
        source=f"the device authorization response from {device_endpoint}",
    )
    life = code.expires_at - clock()
    log.info("device login started; code expires in %.0f s, polling every %.0f s", life, code.interval)
    if on_started is not None:
        on_started(code)
    shown = show(code)
    status = shown if isinstance(shown, WaitStatus) else None
    outcome: Outcome = "failed"
    try:
        response = _poll(client, token_endpoint, code, clock, _waiter(status, clock, sleep, code.expires_at))
        outcome = "approved"
        return response
    except AccessDenied:
        outcome = "denied"
        raise
    except DeviceCodeExpired:
        outcome = "expired"
        raise
    except Exception:
        raise
    except BaseException:  # KeyboardInterrupt, SystemExit, task cancellation
        outcome = "cancelled"
        raise
    finally:
        if status is not None:
            try:
                status.done(outcome)
            except Exception:  # a broken display must not cost the person their login
                log.debug("the prompt failed to show the outcome", exc_info=True)


def _poll(
    client: DeviceFlowClient,
    endpoint: str,
    code: DeviceCode,
    clock: Callable[[], float],
    wait: Callable[[float], None],
) -> dict[str, Any]:
    interval = code.interval
    backoff = 0.0
    polls = 0
    final_at = code.expires_at - _FINAL_POLL_MARGIN
    # Polls are at least MIN_INTERVAL apart, so this many fit in the code's life; the bound
    # also ends the loop when an injected clock does not move.
    max_polls = math.ceil((code.expires_at - clock()) / MIN_INTERVAL) + 1
    while True:
        now = clock()
        if now >= code.expires_at or polls >= max_polls:
            raise _expired()
        # The wait counts from the last answer (or the device authorization response).
        delay = max(interval, backoff)
        final = now + delay >= final_at
        if final:
            if polls and final_at - now < MIN_INTERVAL:
                # The last poll was just now; another would tell us nothing new.
                wait(code.expires_at - now)
                raise _expired()
            # One poll just before expiry (the only one when the interval outlasts the code).
            delay = max(0.0, final_at - now)
        wait(delay)
        polls += 1
        try:
            return client.poll(endpoint, code.device_code)
        except AuthorizationPending as pending:
            backoff = 0.0
            if pending.slow:
                interval = min(interval + SLOW_DOWN_STEP, MAX_INTERVAL)
                log.debug("server asked to slow down; polling every %.0f s", interval)
        except ServerError as exc:
            if not exc.transient:
                raise
            backoff = min(max(backoff * 2, interval), _MAX_BACKOFF)
            # INFO, not WARNING: logging's last-resort handler would write a warning into the
            # middle of the prompt's live line; a retry is not yet a problem.
            log.info("polling failed (%s); retrying in %.0f s", exc, backoff)
        if final:
            raise _expired()


def _waiter(
    status: WaitStatus | None, clock: Callable[[], float], sleep: Callable[[float], None], expires_at: float
) -> Callable[[float], None]:
    """Sleep for a while, in steps short enough for the prompt's countdown."""
    step = math.inf
    if status is not None:
        step = max(_TIME_SLACK, _finite(status.tick_every, math.inf))
    ticking = status

    def wait(seconds: float) -> None:
        nonlocal ticking
        # The steps add up to the wait; the clock is read only for the countdown, so a sleep
        # that does not move the clock (an injected one) still ends the wait.
        left = seconds
        while True:
            if ticking is not None:
                try:
                    ticking.tick(max(0.0, expires_at - clock()))
                except Exception:  # a broken display must not end the login
                    log.debug("the prompt failed to show the time left; no more updates", exc_info=True)
                    ticking = None
            if left <= _TIME_SLACK:
                return
            chunk = min(left, step) if ticking is not None else left
            sleep(chunk)
            left -= chunk

    return wait


def _expired() -> DeviceCodeExpired:
    return DeviceCodeExpired(
        "the sign-in code expired before it was approved; run the login again", error="expired_token"
    )


# -- checking what the server says -----------------------------------------------------------------


def clean_text(value: object, limit: int) -> str:
    """Display form of any value: visible characters only, at most ``limit`` of them.

    The prompt applies it to every field it shows, so even a ``DeviceCode`` built by hand
    cannot put a control sequence on the terminal.
    """
    text = value if isinstance(value, str) else ""
    kept = "".join(ch for ch in text if _visible(ch))
    return kept if len(kept) <= limit else kept[: limit - 1] + "…"


def web_url(value: object) -> str | None:
    """``value`` when it is a link we may show as a link, open or encode in a QR code; else None."""
    return value if isinstance(value, str) and not _url_problem(value) else None


def _visible(ch: str) -> bool:
    if ch == " ":
        return True
    # isprintable() is False for C0/C1/DEL, format characters (zero-width, bidi controls),
    # line and paragraph separators and unassigned code points; combining marks can overlay
    # the characters before them.
    if not ch.isprintable() or unicodedata.category(ch).startswith("M"):
        return False
    return unicodedata.bidirectional(ch) not in _RTL


def _strip(value: object) -> object:
    return value.strip(" \t\r\n") if isinstance(value, str) else value


def _user_code(value: object, source: str) -> str:
    if value is None or value == "":
        raise ServerError(f"{source} lacks user_code")
    if not isinstance(value, str):
        raise ServerError(f"{source} has a user_code that is not a string")
    text = value.strip(" \t\r\n")
    if not text:
        raise ServerError(f"{source} has an empty user_code")
    if len(text) > MAX_USER_CODE:
        raise ServerError(f"{source} has a user_code longer than {MAX_USER_CODE} characters")
    if not all(_visible(ch) for ch in text):
        # Never echoed: the value is exactly what must not reach a terminal.
        raise ServerError(f"{source} has a user_code with control or invisible characters")
    return text


def _device_code(value: object, source: str) -> str:
    # The device code is a secret: messages name the problem, never the value.
    if value is None or value == "":
        raise ServerError(f"{source} lacks device_code")
    if not isinstance(value, str):
        raise ServerError(f"{source} has a device_code that is not a string")
    if len(value) > MAX_DEVICE_CODE:
        raise ServerError(f"{source} has a device_code longer than {MAX_DEVICE_CODE} characters")
    return value


def _url_problem(value: object) -> str:
    """Why ``value`` is not a link we show or open, or '' when it is fine."""
    if not isinstance(value, str):
        return "not a string"
    if len(value) > MAX_URI:
        return f"longer than {MAX_URI} characters"
    if not _URI_CHARS.fullmatch(value):
        return "characters that are not allowed in a URL"
    try:
        parts = urllib.parse.urlsplit(value)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "not an http(s) URL"
    if not hostname:
        return "no host"
    if "@" in parts.netloc:
        return "user info in the host part"
    return ""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _loopback(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _carries_code(url: str, user_code: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    params = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    # A parameter that names a code must name ours (e.g. not ?user_code=OTHER&x=OURS).
    if any(value != user_code for name, value in params if "code" in name.lower()):
        return False
    segments = [urllib.parse.unquote(segment) for segment in parts.path.split("/")]
    return user_code in segments or any(value == user_code for _, value in params)


def _complete_uri(value: object, verification_uri: str, user_code: str) -> str | None:
    if value is None or value == "":
        return None
    value = _strip(value)
    problem = _url_problem(value)
    if not problem:
        assert isinstance(value, str)
        if _origin(value) != _origin(verification_uri):
            problem = "on another site than verification_uri"
        elif not _carries_code(value, user_code):
            problem = "it does not carry the user code that is shown"
    if problem:
        log.warning("ignoring the server's verification_uri_complete: %s; the person types the code instead", problem)
        return None
    assert isinstance(value, str)
    return value


def _number(value: object) -> float | None:
    """A JSON number (or a numeric string, as some servers send) as a float; None when it is not one.

    Huge integers (10**400) become inf instead of raising OverflowError.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return math.inf if value > 10**18 else -math.inf if value < -(10**18) else float(value)
    if isinstance(value, float):
        return value
    if isinstance(value, str) and len(value) <= 32:
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _finite(value: object, default: float) -> float:
    number = _number(value)
    return default if number is None or math.isnan(number) else number


def _code_life(value: object, max_life: float) -> float:
    number = _number(value)
    if number is None or math.isnan(number) or number <= 0:
        what = "no expires_in" if value is None else f"an unusable expires_in (a {type(value).__name__})"
        log.warning("the device authorization response has %s; assuming %.0f s", what, DEFAULT_EXPIRES_IN)
        return min(DEFAULT_EXPIRES_IN, max_life)
    if number > max_life:
        log.info("the server gave the device code %s s of life; using at most %.0f s", _shown(number), max_life)
        return max_life
    return number


def _interval(value: object) -> float:
    if value is None:
        return DEFAULT_INTERVAL
    number = _number(value)
    if number is None or math.isnan(number) or number <= 0:
        log.warning(
            "the device authorization response has an unusable interval; polling every %.0f s",
            DEFAULT_INTERVAL,
        )
        return DEFAULT_INTERVAL
    clamped = min(max(number, MIN_INTERVAL), MAX_INTERVAL)
    if clamped != number:
        log.info("the server asked to poll every %s s; polling every %.0f s", _shown(number), clamped)
    return clamped


def _shown(number: float) -> str:
    return "inf" if math.isinf(number) else f"{number:.6g}"
