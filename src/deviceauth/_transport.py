"""Rules every adapter applies before a token leaves the process."""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import urlsplit

from ._exceptions import InsecureTransport

__all__ = ["check_transport"]


def check_transport(url: str) -> None:
    """Refuse plain http unless the host is loopback (local development servers)."""
    if url[:8].lower() == "https://":
        return
    parts = urlsplit(url)
    if parts.scheme == "http" and _is_loopback(parts.hostname or ""):
        return
    raise InsecureTransport(
        f"refusing to send a token over {parts.scheme or 'an unknown scheme'} to {parts.hostname}; "
        "use https (plain http is allowed only for loopback hosts)"
    )


@functools.lru_cache(maxsize=64)
def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
