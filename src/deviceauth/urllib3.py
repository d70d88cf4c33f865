"""urllib3 has no auth hook, so the drop-in is a ``PoolManager`` that adds the token itself.

    http = deviceauth.urllib3.PoolManager(auth, origins=["https://api.example.org"])
    http.request("GET", "https://api.example.org/items")

urllib3 follows redirects by calling ``urlopen`` again, so this class sees every hop: the
token is added only for the origins it is meant for, and never on a hop that left the origin
the call started at.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import urllib3
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import LocationParseError
from urllib3.response import BaseHTTPResponse
from urllib3.util import parse_url

from ._source import TokenSource
from ._transport import check_outbound

__all__ = ["PoolManager"]


class PoolManager(urllib3.PoolManager):
    """A ``urllib3.PoolManager`` that sends ``Authorization: Bearer`` from a ``DeviceAuth``.

    :param auth: the ``DeviceAuth`` (or any ``TokenSource``) whose tokens to send.
    :param origins: the origins (``scheme://host[:port]``) that get the token; default: every
        origin a call starts at (redirects to other origins never get it).
    Other keyword arguments go to ``urllib3.PoolManager``.
    """

    def __init__(self, auth: TokenSource, *, origins: Iterable[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token_source = auth
        self._origins = None if origins is None else frozenset(_origin(url) for url in origins)
        self._calls = threading.local()

    def urlopen(  # type: ignore[override]  # same signature as urllib3.PoolManager.urlopen
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> BaseHTTPResponse:
        calls = self._calls
        if getattr(calls, "origin", None) is not None:
            return self._hop(method, url, redirect, kw)
        # One call, whatever its redirects: they come back through urlopen and are hops of it.
        calls.origin, calls.token, calls.left = _origin(url), None, False
        try:
            if self._origins is not None and calls.origin not in self._origins:
                calls.left = True
                return super().urlopen(method, url, redirect=redirect, **_without_token(kw, self.headers))
            return self._authorized(method, url, redirect, kw)
        finally:
            calls.origin = calls.token = None

    def _authorized(self, method: str, url: str, redirect: bool, kw: dict[str, Any]) -> BaseHTTPResponse:
        calls = self._calls
        # The same check every adapter applies; it refuses URLs urllib3 and urllib.parse read differently.
        check_outbound(url)
        calls.token = self.token_source.get_token()
        body = kw.get("body")
        start = _tell(body)
        response = super().urlopen(method, url, redirect=redirect, **_with_token(kw, self.headers, calls.token))
        # A 401 after the call left the origin is not about our token, which that host never saw.
        if response.status != 401 or calls.left or not _replayable(body, start):
            return response
        response.drain_conn()
        response.release_conn()
        if start is not None:
            kw["body"].seek(start)
        calls.token = self.token_source.renew(calls.token)
        return super().urlopen(method, url, redirect=redirect, **_with_token(kw, self.headers, calls.token))

    def _hop(self, method: str, url: str, redirect: bool, kw: dict[str, Any]) -> BaseHTTPResponse:
        """A redirect hop: the call's token only while every hop so far stayed at its origin."""
        calls = self._calls
        if calls.left or calls.token is None or _origin(url) != calls.origin:
            calls.left = True  # and stays so: a hop back to the origin was chosen by another host
            return super().urlopen(method, url, redirect=redirect, **_without_token(kw, self.headers))
        return super().urlopen(method, url, redirect=redirect, **_with_token(kw, self.headers, calls.token))


def _headers(kw: dict[str, Any], defaults: Any) -> HTTPHeaderDict:
    # As urllib3 does: the pool's headers only when the call passed none at all.
    return HTTPHeaderDict(kw.get("headers", defaults) or {})


def _with_token(kw: dict[str, Any], defaults: Any, token: str) -> dict[str, Any]:
    headers = _headers(kw, defaults)
    headers["Authorization"] = f"Bearer {token}"  # case-insensitive: replaces a caller's own
    return {**kw, "headers": headers}


def _without_token(kw: dict[str, Any], defaults: Any) -> dict[str, Any]:
    # Whatever the caller's Retry keeps on redirects, our token never goes to another origin.
    headers = _headers(kw, defaults)
    headers.discard("Authorization")
    return {**kw, "headers": headers}


def _origin(url: str) -> str:
    """The origin as urllib3 itself will read it (``urllib.parse`` can disagree: ``http://a\\@b/``)."""
    try:
        parts = parse_url(url)
    except LocationParseError:
        return "(unparsable)"  # matches no origin: no token; urllib3 raises its own error for the request
    scheme = (parts.scheme or "").lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{(parts.host or '').strip('[]').lower()}:{port}"


def _tell(body: Any) -> int | None:
    tell = getattr(body, "tell", None)
    if tell is None or not hasattr(body, "seek"):
        return None
    try:
        position = tell()
    except OSError:
        return None
    return position if isinstance(position, int) else None


def _replayable(body: Any, start: int | None) -> bool:
    return body is None or isinstance(body, bytes | bytearray | memoryview | str | dict) or start is not None
