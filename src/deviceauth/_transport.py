"""How our requests travel: the outbound policy for every URL, and bounded OAuth responses.

``check_outbound`` is the one rule for every request the library makes or authorizes (discovery,
device authorization, polls, refresh, revocation, and API calls through every adapter): https,
or plain http only to a loopback host, and only URLs that every parser reads the same way.

``BoundedAdapter`` is mounted on the OAuth session, so Authlib's own requests go through it too:
it applies ``check_outbound``, refuses redirects (a token request must never be replayed to
another origin), caps the decoded size of a response and bounds each exchange's total time,
where requests' ``timeout=`` only bounds each socket read.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
import socket
import threading
import zlib
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager
from urllib3.util import parse_url

from ._exceptions import DeviceAuthError, InsecureTransport, ServerError
from ._redact import redact

__all__ = ["MAX_RESPONSE_BYTES", "BoundedAdapter", "check_outbound", "check_transport", "safe_origin"]

# Discovery documents and token responses are a few KB; a JWT-heavy Keycloak answer stays under 20 KB.
MAX_RESPONSE_BYTES = 256 * 1024
_CHUNK = 16 * 1024
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
    origin = _checked_origin(scheme.lower(), rest[:end])
    if rest[end : end + 1] == "/":
        if len(_verified) >= _MAX_VERIFIED:
            _verified.clear()
        _verified[url[: len(scheme) + 3 + end]] = origin
    return origin


# Kept for the adapters that call it by this name.
check_transport = check_outbound


def safe_origin(url: object) -> str:
    """``scheme://host[:port]`` of a URL for a message: never its path or query, never raw control characters."""
    if not isinstance(url, str):
        return f"a {type(url).__name__} instead of a URL"
    scheme, sep, rest = url.partition("://")
    if sep:
        shown = f"{scheme}://{re.split(r'[/?#]', rest, maxsplit=1)[0].rpartition('@')[2]}"
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
    if scheme == "http" and not _is_loopback(host):
        raise InsecureTransport(
            f"refusing to send a request over plain http to {host}; use https (plain http is allowed only for "
            "loopback hosts)"
        )
    return f"{scheme}://{host}:{port}"


def _agreed_host_port(scheme: str, authority: str) -> tuple[str, int]:
    probe = f"{scheme}://{authority}/"
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
def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- bounded OAuth responses ----------------------------------------------------------------------


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
