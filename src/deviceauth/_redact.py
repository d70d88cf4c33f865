"""Making server-provided text safe to put in an exception message or a log record.

A server's ``error_description`` (or any text it sends) may echo what we sent it: a refresh
token, a device code, a client secret. ``redact`` replaces every known secret by its
fingerprint, removes control and formatting characters (so the text cannot rewrite a
terminal line) and caps the length.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote_plus

from ._token import fingerprint

__all__ = ["MAX_SERVER_TEXT", "redact", "secret_forms"]

MAX_SERVER_TEXT = 200
# C0/C1 controls and DEL: a cheap first pass before the Unicode category check below.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def secret_forms(secrets: Iterable[str | None], *, client_id: str | None = None) -> list[str]:
    """Every spelling of ``secrets`` a server could echo: raw, URL-encoded, and an HTTP Basic credential."""
    forms: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        forms.update((secret, quote(secret, safe=""), quote_plus(secret)))
        forms.add(base64.b64encode(secret.encode()).decode("ascii").rstrip("="))
        if client_id is not None:
            forms.add(base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii").rstrip("="))
    # Longest first, so a secret that contains another one is replaced whole.
    return sorted(forms, key=len, reverse=True)


def redact(text: object, secrets: Iterable[str] = (), *, limit: int = MAX_SERVER_TEXT) -> str:
    """``text`` as a single printable ASCII line without any of ``secrets``, at most ``limit`` characters.

    Server texts are ASCII (RFC 6749 §5.2): anything else is dropped, since invisible marks and
    fillers could hide inside a secret. A text that quotes a good part of a secret in any
    spelling (percent-encoded in either case, HTML- or backslash-escaped, cut short) is withheld
    whole rather than trusted to partial replacement.
    """
    value = text if isinstance(text, str) else _to_str(text)
    # Controls go first: a secret split by inserted control characters is whole again before the scan.
    value = _CONTROLS.sub("", value)
    if not value.isascii():
        value = value.encode("ascii", "ignore").decode("ascii")
    secrets = [secret for secret in secrets if secret]
    for secret in secrets:
        if secret in value:
            value = value.replace(secret, f"<secret {fingerprint(secret)}>")
    if secrets and _quotes_a_secret(value, secrets):
        return "<server text withheld: it quoted a secret>"
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


_WINDOW = 12  # a run this long from a random token is no coincidence
_SCANNED = 4096  # server text beyond this is cut anyway; scan what could be shown


def _quotes_a_secret(value: str, secrets: list[str]) -> bool:
    scanned = value[:_SCANNED]
    views = {scanned, unquote_plus(scanned), html.unescape(scanned), scanned.replace("\\\\", "\\")}
    for secret in secrets:
        if len(secret) < 2 * _WINDOW:
            continue  # short values (a user code, a fingerprint) are matched whole above
        for start in range(len(secret) - _WINDOW + 1):
            window = secret[start : start + _WINDOW]
            if any(window in view for view in views):
                return True
    return False


def _to_str(value: object) -> str:
    # A structured value is not rendered: repr() escapes quotes and backslashes, so a secret inside
    # it would no longer match (and the server gave no text to show).
    return f"<{type(value).__name__}>"
