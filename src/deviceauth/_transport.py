"""The outbound policy: the one rule for every URL a token or credential is sent to.

``check_outbound`` applies to every request the library makes or authorizes (discovery, device
authorization, polls, refresh, revocation, and API calls through every adapter): https, or plain
http only to a loopback host, and only URLs that every parser reads the same way. It is on the
warm path of every API call, so a URL whose origin already passed costs a dictionary lookup and
a character scan, and it imports no HTTP library.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import urlsplit

from ._exceptions import InsecureTransport
from ._redact import redact

__all__ = ["check_outbound", "check_transport", "is_loopback", "safe_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Whitespace, controls, DEL and backslash: characters on which URL parsers (and browsers) disagree.
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")
# host[:port] with nothing else: no userinfo (``@``), no percent-escapes, no IDN (ASCII only).
_AUTHORITY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::[0-9]{1,5})?")
# Exact "scheme://authority" prefixes (as spelled) that passed, for the fast path.
_verified: dict[str, str] = {}
_MAX_VERIFIED = 256


def check_outbound(url: object) -> str:
    """Return ``scheme://host:port`` of ``url``, or raise ``InsecureTransport`` if we may not send to it.

    Allowed: https to any host; http only to a loopback host (local development servers).
    Refused: any other scheme, userinfo, whitespace, control characters, backslashes, non-ASCII
    hosts, and any URL that ``urllib.parse`` and urllib3 (which requests uses) read differently.
    """
    # The per-request cost of every API call: a URL whose exact ``scheme://authority`` prefix
    # already passed needs only a scan of its characters.
    if type(url) is str:
        cut = url.find("/", 8)
        if cut > 0:
            origin = _verified.get(url[:cut])
            if origin is not None and url.isprintable() and " " not in url and "\\" not in url:
                return origin
    return _check(url)


def _check(url: object) -> str:
    if not isinstance(url, str) or _UNSAFE.search(url):
        raise InsecureTransport(
            f"refusing to send a request to {safe_origin(url)}: the URL contains whitespace, control characters or "
            "a backslash"
        )
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InsecureTransport(f"refusing to send a request to {safe_origin(url)}: only http(s) URLs are allowed")
    end = len(rest)
    for delimiter in "/?#":
        found = rest.find(delimiter, 0, end)
        if found >= 0:
            end = found
    if "@" in rest and not _AUTHORITY.fullmatch(rest[:end]):
        # user:password@ with a / ? or # inside the password: any part of it shown is a leak.
        raise InsecureTransport(
            f"refusing to send a request to a {redact(scheme, limit=20)} URL with user info (user:password@); "
            "its host is not shown"
        )
    origin = _checked_origin(scheme.lower(), rest[:end])
    if rest[end : end + 1] == "/":
        if len(_verified) >= _MAX_VERIFIED:
            _verified.clear()
        _verified[url[: len(scheme) + 3 + end]] = origin
    return origin


def check_transport(url: object) -> str:
    """``check_outbound`` for API calls made by requests and HTTPX, which honour proxy variables.

    Plain http (loopback only) would reach an ``$HTTP_PROXY`` in clear, token and all: refused
    unless ``$NO_PROXY`` exempts the host. (urllib3 ignores those variables; it needs only
    ``check_outbound``. A proxy set on a session in code cannot be seen from ``auth=``.)
    """
    origin = check_outbound(url)
    if origin[:5] == "http:":
        refuse_environment_proxy(origin)
    return origin


def refuse_environment_proxy(origin: str) -> None:
    import urllib.request  # plain http only: local development, never a production warm path

    proxies = urllib.request.getproxies_environment()
    if not (proxies.get("http") or proxies.get("all")):
        return
    host = origin.removeprefix("http://").rpartition(":")[0].strip("[]")
    if not urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        raise InsecureTransport(
            f"refusing to send a token over plain http to {host} through the proxy in $HTTP_PROXY, which "
            f"would see it in clear; add {host} to $NO_PROXY"
        )


def safe_origin(url: object) -> str:
    """``scheme://host[:port]`` of a URL for a message: never its path or query, never raw control characters."""
    if not isinstance(url, str):
        return f"a {type(url).__name__} instead of a URL"
    scheme, sep, rest = url.partition("://")
    if sep:
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        if "@" in rest and not _AUTHORITY.fullmatch(authority.rpartition("@")[2]):
            return f"{redact(scheme, limit=20)}://(host hidden: the URL holds user info)"
        shown = f"{scheme}://{authority.rpartition('@')[2]}"
    elif ":" in url:
        shown = f"a {url.partition(':')[0][:20]}: URL"
    else:
        shown = f"{url[:40]}"
    return redact(shown, limit=100) or "''"


@functools.lru_cache(maxsize=256)
def _checked_origin(scheme: str, authority: str) -> str:
    if scheme not in _DEFAULT_PORTS:
        raise InsecureTransport(
            f"refusing to send a request to a {redact(scheme, limit=20)!r} URL: only http(s) URLs are allowed"
        )
    if not authority.isascii() or not _AUTHORITY.fullmatch(authority):
        raise InsecureTransport(
            # The part before "@" may be a password: never shown.
            f"refusing to send a request to {scheme}://{redact(authority.rpartition('@')[2], limit=80)}: the host "
            "part must be a plain host name or address with an optional port (no user:password@, no escapes)"
        )
    host, port = _agreed_host_port(scheme, authority)
    if scheme == "http" and not is_loopback(host):
        raise InsecureTransport(
            f"refusing to send a request over plain http to {host}; use https (plain http is allowed only for "
            "loopback hosts)"
        )
    return f"{scheme}://{host}:{port}"


def _agreed_host_port(scheme: str, authority: str) -> tuple[str, int]:
    probe = f"{scheme}://{authority}/"
    from urllib3.util import parse_url  # requests and our urllib3 adapter send with its parser

    try:
        split = urlsplit(probe)
        default = _DEFAULT_PORTS[scheme]
        ours = ((split.hostname or "").lower(), default if split.port is None else split.port)
        parsed = parse_url(probe)
        theirs = ((parsed.host or "").strip("[]").lower(), default if parsed.port is None else parsed.port)
    except Exception as exc:  # each parser has its own error types (ValueError, LocationParseError)
        raise InsecureTransport(f"refusing to send a request to {scheme}://{authority}: unreadable host/port") from exc
    if ours != theirs or not ours[0] or not 0 < ours[1] < 65536:
        raise InsecureTransport(f"refusing to send a request to {scheme}://{authority}: ambiguous host or port")
    return ours


@functools.lru_cache(maxsize=64)
def is_loopback(host: str) -> bool:
    # Only the name the resolver never sends out (RFC 6761), not every *.localhost name: Python
    # resolves those through DNS and search domains like any other.
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
