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
from urllib.parse import urlsplit

import urllib3
from urllib3.response import BaseHTTPResponse

from ._source import TokenSource
from ._transport import check_transport

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
        origin = _origin(url)
        outermost = getattr(self._calls, "origin", None) is None
        if outermost:
            self._calls.origin = origin
        elsewhere = origin != self._calls.origin
        if elsewhere:
            self._calls.left_origin = True  # a redirect hop elsewhere: no token, and its 401 is not about ours
        try:
            if elsewhere or (self._origins is not None and origin not in self._origins):
                return super().urlopen(method, url, redirect=redirect, **kw)
            return self._authorized(method, url, redirect, kw)
        finally:
            if outermost:
                self._calls.origin = None

    def _authorized(self, method: str, url: str, redirect: bool, kw: dict[str, Any]) -> BaseHTTPResponse:
        check_transport(url)
        token = self.token_source.get_token()
        body = kw.get("body")
        start = _tell(body)
        self._calls.left_origin = False
        response = super().urlopen(method, url, redirect=redirect, **_with_token(kw, self.headers, token))
        if response.status != 401 or self._calls.left_origin or not _replayable(body, start):
            return response
        response.drain_conn()
        response.release_conn()
        if start is not None:
            kw["body"].seek(start)
        fresh = self.token_source.renew(token)
        return super().urlopen(method, url, redirect=redirect, **_with_token(kw, self.headers, fresh))


def _with_token(kw: dict[str, Any], defaults: Any, token: str) -> dict[str, Any]:
    headers = dict(kw.get("headers") or defaults)
    headers["Authorization"] = f"Bearer {token}"
    return {**kw, "headers": headers}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


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
    return body is None or isinstance(body, bytes | str | dict) or start is not None
