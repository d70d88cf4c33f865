"""Making server-provided text safe to put in an exception message or a log record.

A server's ``error_description`` (or any text it sends) may echo what we sent it: a refresh
token, a device code, a client secret. ``redact`` replaces every known secret by its
fingerprint, removes control and formatting characters (so the text cannot rewrite a
terminal line) and caps the length.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

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
        if client_id is not None:
            forms.add(base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii"))
    # Longest first, so a secret that contains another one is replaced whole.
    return sorted(forms, key=len, reverse=True)


def redact(text: object, secrets: Iterable[str] = (), *, limit: int = MAX_SERVER_TEXT) -> str:
    """``text`` as a single printable line without any of ``secrets``, at most ``limit`` characters."""
    value = text if isinstance(text, str) else _to_str(text)
    # Controls go first: a secret split by inserted control characters is whole again before the scan.
    value = _CONTROLS.sub("", value)
    if not value.isascii():
        value = "".join(ch for ch in value if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"))
    for secret in secrets:
        if secret and secret in value:
            value = value.replace(secret, f"<secret {fingerprint(secret)}>")
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


def _to_str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a server value we cannot even render (a huge int, a deep structure)
        return f"<{type(value).__name__}>"
