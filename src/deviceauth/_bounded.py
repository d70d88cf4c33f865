"""Bounded OAuth responses: no redirects, a size cap and a total deadline for every exchange.

``BoundedAdapter`` is mounted on the OAuth session, so Authlib's own requests go through it too:
it applies ``check_outbound``, refuses redirects (a token request must never be replayed to
another origin), caps the decoded size of a response and bounds each exchange's total time,
where requests' ``timeout=`` only bounds each socket read.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import zlib
from typing import Any
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager

from ._exceptions import DeviceAuthError, ServerError
from ._redact import redact
from ._transport import check_outbound, safe_origin

__all__ = ["MAX_RESPONSE_BYTES", "BoundedAdapter", "failure_reason"]

# Discovery documents and token responses are a few KB; a JWT-heavy Keycloak answer stays under 20 KB.
MAX_RESPONSE_BYTES = 256 * 1024
_CHUNK = 16 * 1024


class BoundedAdapter(HTTPAdapter):
    """A requests adapter for OAuth exchanges: outbound check, no redirects, size cap, total deadline.

    ``deadline`` bounds one request from sending it to its last body byte: a watchdog shuts the
    connection's socket down when it passes, which ends a read however slowly the server trickles.
    """

    def __init__(self, *, deadline: float, max_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.deadline = deadline
        self.max_bytes = max_bytes
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:  # SOCKS managers bring their own connection classes
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        url = request.url or ""
        check_outbound(url)
        if url[:7].lower() == "http://":
            proxies = {}  # plain http goes only to loopback, and never in clear through a proxy
        watch = _Watch(self.deadline)
        _current.watch = watch
        try:
            try:
                response = super().send(
                    request, stream=True, timeout=timeout, verify=verify, cert=cert, proxies=proxies
                )
            except Exception as exc:
                if watch.expired:
                    raise _too_slow(url, self.deadline) from exc
                raise  # requests' own errors: the exchange boundary names the endpoint
            try:
                _refuse_redirect(url, response)
                response._content = _read_capped(url, response, self.max_bytes, watch)
                response._content_consumed = True  # type: ignore[attr-defined]  # so close() keeps the connection
            except DeviceAuthError:
                raise
            except Exception as exc:  # a body cut short or garbled: worth another try, like a reset connection
                if watch.expired:
                    raise _too_slow(url, self.deadline) from exc
                raise ServerError(
                    f"{safe_origin(url)} broke off its answer ({type(exc).__name__})", transient=True
                ) from exc
            finally:
                response.close()  # the body is read (or refused): give the connection back, or drop it
        finally:
            _current.watch = None
            watch.cancel()
        return response


def _refuse_redirect(url: str, response: requests.Response) -> None:
    if not 300 <= response.status_code < 400:
        return
    location = response.headers.get("Location")
    target = safe_origin(urljoin(url, location)) if location else "(no Location)"
    raise ServerError(
        f"{safe_origin(url)} answered HTTP {response.status_code} redirecting to {target}; OAuth requests never "
        "follow redirects: configure the issuer or endpoint URL the server really uses",
        transient=False,
    )


def _read_capped(url: str, response: requests.Response, limit: int, watch: _Watch) -> bytes:
    declared = response.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise _too_big(url, limit)
    decoder = _decoder(url, response.headers.get("Content-Encoding", ""))
    raw = response.raw
    read = getattr(raw, "read1", None) or raw.read  # read1: whatever has arrived, not a full chunk
    body = bytearray()
    received = 0
    while True:
        if watch.expired:
            raise TimeoutError
        chunk = read(_CHUNK, decode_content=False)
        if not chunk:
            break
        received += len(chunk)
        if received > limit:  # compressed bytes count too: an endless stream of empty deflate blocks
            raise _too_big(url, limit)
        if decoder is not None:
            # max_length: a gzip bomb yields at most one byte past the cap per chunk, never its full size.
            chunk = decoder.decompress(chunk, limit - len(body) + 1)
        body += chunk
        if len(body) > limit:
            raise _too_big(url, limit)
    if decoder is not None:
        body += decoder.flush()
        if len(body) > limit:
            raise _too_big(url, limit)
    return bytes(body)


def _decoder(url: str, encoding: str) -> Any:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(32 + zlib.MAX_WBITS)  # 32: accept a gzip or a zlib header
    raise ServerError(
        f"{safe_origin(url)} answered with content encoding {redact(encoding, limit=40)!r}, which was not asked for",
        transient=False,
    )


def _too_big(url: str, limit: int) -> ServerError:
    return ServerError(f"{safe_origin(url)} sent a response larger than {limit // 1024} KiB", transient=False)


def _too_slow(url: str, deadline: float) -> ServerError:
    return ServerError(f"{safe_origin(url)} did not finish answering within {deadline:g} s", transient=True)


class _Watch:
    """Shuts down the socket of the connection in use once ``seconds`` have passed."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._connection: Any = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, connection: Any) -> None:
        with self._lock:
            self._connection = connection
            if self.expired:
                _shut_down(connection)

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._connection = None

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._connection is not None:
                _shut_down(self._connection)


def _shut_down(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        # The plain socket's shutdown, also for TLS: it wakes the reader without a TLS close_notify.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _CurrentWatch(threading.local):
    watch: _Watch | None = None


_current = _CurrentWatch()


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self) -> Any:
        watch = _current.watch
        if watch is not None:
            watch.attach(self)
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> Any:
        watch = _current.watch
        if watch is not None:
            watch.attach(self)
        return super().getresponse()


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def failure_reason(exc: requests.RequestException) -> str:
    """A few words on why a request failed, for a message (never the library's own text, which may hold a URL)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification failed"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__
