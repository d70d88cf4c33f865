"""The urllib3 ``PoolManager`` adapter against two scripted HTTP servers on 127.0.0.1.

urllib3 has no mock transport, so two ``http.server`` instances in threads (two ports: two
origins) answer from one shared script (a status, or a redirect and its Location) and record
the Authorization header and body of every request. Tokens come from ``FakeSource``; the last
tests go through a real ``DeviceAuth`` with a cached token (its token endpoint on ``responses``).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import responses
import urllib3
from deviceauth_fakes import CLIENT_ID, ISSUER, FakeAuthServer, FakeClock, make_auth, make_token, metadata, write_cache
from source_fakes import FakeSource

from deviceauth import DeviceAuth, InsecureTransport, Token
from deviceauth._source import TokenSource
from deviceauth.urllib3 import PoolManager

PAYLOAD = bytes(range(256)) * 64  # 16 KiB
Answer = int | tuple[int, str]  # a status, or a redirect status and its Location
Scripted = Answer | Callable[[], Answer]  # a callable runs in the handler thread, e.g. to hold the answer


@dataclass(frozen=True)
class Seen:
    port: int
    path: str
    authorization: str | None
    headers: dict[str, str]
    body: bytes
    every_authorization: tuple[str, ...] = ()  # all Authorization headers, whatever their case


@dataclass
class Script:
    """What both servers answer, in order, and what they were sent."""

    answers: list[Scripted] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, seen: Seen) -> Answer:
        with self.lock:
            self.seen.append(seen)
            answer = self.answers.pop(0) if self.answers else 599  # 599: the test sent more than it scripted
        return answer() if callable(answer) else answer

    @property
    def authorizations(self) -> list[str | None]:
        return [seen.authorization for seen in self.seen]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: Script) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the adapter's drain and release matter
    timeout = 5  # a stuck client cannot hold a handler thread past the test

    def do_GET(self) -> None:
        self._answer()

    do_POST = do_PUT = do_GET

    def _answer(self) -> None:
        assert isinstance(self.server, _Server)
        seen = Seen(
            port=self.server.server_address[1],
            path=self.path,
            authorization=self.headers.get("Authorization"),
            headers=dict(self.headers.items()),
            body=self._body(),
            every_authorization=tuple(self.headers.get_all("Authorization") or ()),
        )
        answer = self.server.script.next(seen)
        status, location = (answer, None) if isinstance(answer, int) else answer
        text = f"status {status}".encode()
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        for _ in range(10_000):  # bounded: a body of at most 10,000 chunks
            size = int(self.rfile.readline().split(b";")[0], 16)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
            if size == 0:
                break
        return b"".join(chunks)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet


@dataclass(frozen=True)
class Origins:
    a: str  # where calls start
    b: str  # another origin (another port)

    @property
    def port_b(self) -> int:
        return int(self.b.rsplit(":", 1)[1])


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def origins(script: Script) -> Iterator[Origins]:
    servers = [_Server(script), _Server(script)]
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield Origins(*(f"http://127.0.0.1:{s.server_address[1]}" for s in servers))
    finally:
        for server, thread in zip(servers, threads, strict=True):
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


@pytest.fixture
def pool() -> Iterator[Callable[..., PoolManager]]:
    """Builds ``PoolManager``s with a bounded timeout; closes their connections afterwards."""
    made: list[PoolManager] = []

    def make(source: TokenSource, **kwargs: Any) -> PoolManager:
        kwargs.setdefault("timeout", urllib3.Timeout(total=5))
        made.append(PoolManager(source, **kwargs))
        return made[-1]

    yield make
    for manager in made:
        manager.clear()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the header and the 401 retry -------------------------------------------------------------


def test_sets_the_bearer_header(pool: Callable[..., PoolManager], origins: Origins, script: Script) -> None:
    source = FakeSource()
    script.answers = [200]
    response = pool(source).request("GET", f"{origins.a}/items")
    assert response.status == 200
    assert script.authorizations == ["Bearer tok-1"]
    assert source.calls == [("get_token", None)]


def test_keeps_the_callers_and_the_pools_headers(
    pool: Callable[..., PoolManager], origins: Origins, script: Script
) -> None:
    script.answers = [401, 200]
    http = pool(FakeSource(), headers={"X-Pool": "p"})
    http.request("GET", f"{origins.a}/pool-headers")
    http.request("GET", f"{origins.a}/call-headers", headers={"X-Call": "c"})
    assert [(s.headers.get("X-Pool"), s.headers.get("X-Call"), s.authorization) for s in script.seen] == [
        ("p", None, "Bearer tok-1"),
        ("p", None, "Bearer tok-2"),
        (None, "c", "Bearer tok-2"),
    ]


@pytest.mark.parametrize("name", ["authorization", "AUTHORIZATION"])
def test_the_token_replaces_the_callers_authorization_header(
    pool: Callable[..., PoolManager], origins: Origins, script: Script, name: str
) -> None:
    script.answers = [200, 200]
    http = pool(FakeSource())
    http.request("GET", f"{origins.a}/plain", headers={name: "Basic dXNlcjpwYXNz"})
    http.request("GET", f"{origins.a}/urllib3", headers=urllib3.HTTPHeaderDict({name: "Basic dXNlcjpwYXNz"}))
    assert [s.every_authorization for s in script.seen] == [("Bearer tok-1",), ("Bearer tok-1",)]


def test_one_401_renews_once_and_retries_with_the_new_token(
    pool: Callable[..., PoolManager], origins: Origins, script: Script
) -> None:
    source = FakeSource()
    script.answers = [401, 200]
    response = pool(source).request("GET", f"{origins.a}/items")
    assert response.status == 200
    assert response.data == b"status 200"
    assert script.authorizations == ["Bearer tok-1", "Bearer tok-2"]
    assert source.renewed == ["tok-1"]


def test_a_second_401_is_returned_as_is(pool: Callable[..., PoolManager], origins: Origins, script: Script) -> None:
    source = FakeSource()
    script.answers = [401, 401]
    response = pool(source).request("GET", f"{origins.a}/items")
    assert response.status == 401
    assert script.authorizations == ["Bearer tok-1", "Bearer tok-2"]
    assert source.renewed == ["tok-1"]


def test_the_401_response_is_drained_and_its_connection_released(
    pool: Callable[..., PoolManager], origins: Origins, script: Script
) -> None:
    script.answers = [401, 200]
    # One connection, and the caller streams: the retry gets a connection only if the 401 gave its back.
    http = pool(FakeSource(), maxsize=1, block=True)
    response = http.request("GET", f"{origins.a}/items", preload_content=False, pool_timeout=1)
    try:
        assert response.status == 200
        assert response.read() == b"status 200"
    finally:
        response.release_conn()
    assert script.authorizations == ["Bearer tok-1", "Bearer tok-2"]


def test_calls_in_other_threads_are_separate_calls(
    pool: Callable[..., PoolManager], origins: Origins, script: Script
) -> None:
    # While one thread's call to A is in flight, another thread's call to B is not a hop of it.
    arrived, release = threading.Event(), threading.Event()

    def held() -> Answer:
        arrived.set()
        assert release.wait(timeout=5)
        return 200

    script.answers = [held, 200]
    http = pool(FakeSource())
    first = threading.Thread(target=http.request, args=("GET", f"{origins.a}/slow"))
    first.start()
    try:
        assert arrived.wait(timeout=5)
        assert http.request("GET", f"{origins.b}/fast").status == 200
    finally:
        release.set()
        first.join(timeout=5)
    assert [(s.port, s.authorization) for s in script.seen][1] == (origins.port_b, "Bearer tok-1")


# -- bodies --------------------------------------------------------------------------------------


def _file_at(tmp_path: Path, offset: int) -> io.BufferedReader:
    path = tmp_path / "payload.bin"
    path.write_bytes(b"x" * offset + PAYLOAD)
    file = path.open("rb")
    file.seek(offset)
    return file


@pytest.mark.parametrize(
    "make_body",
    [
        pytest.param(lambda tmp: PAYLOAD, id="bytes"),
        pytest.param(lambda tmp: PAYLOAD.hex(), id="str"),
        pytest.param(lambda tmp: io.BytesIO(PAYLOAD), id="BytesIO"),
        pytest.param(lambda tmp: _file_at(tmp, 0), id="file"),
        pytest.param(lambda tmp: _file_at(tmp, 1000), id="file-not-at-start"),
    ],
)
def test_a_rewindable_body_is_replayed(
    pool: Callable[..., PoolManager], origins: Origins, script: Script, tmp_path: Path, make_body: Any
) -> None:
    script.answers = [401, 201]
    body = make_body(tmp_path)
    try:
        response = pool(FakeSource()).request("POST", f"{origins.a}/upload", body=body)
    finally:
        if hasattr(body, "close"):
            body.close()
    assert response.status == 201
    expected = PAYLOAD.hex().encode() if isinstance(body, str) else PAYLOAD
    assert [(s.authorization, _sha256(s.body)) for s in script.seen] == [
        ("Bearer tok-1", _sha256(expected)),
        ("Bearer tok-2", _sha256(expected)),
    ]


def test_a_form_is_replayed(pool: Callable[..., PoolManager], origins: Origins, script: Script) -> None:
    script.answers = [401, 201]
    pool(FakeSource()).request("POST", f"{origins.a}/form", fields={"name": "value", "file": ("f.bin", PAYLOAD)})
    first, second = (s.body for s in script.seen)
    assert PAYLOAD in first
    assert first == second


def _chunks() -> Iterator[bytes]:
    yield PAYLOAD[:5000]
    yield PAYLOAD[5000:]


def _pipe() -> io.BufferedReader:
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as writer:
        writer.write(PAYLOAD[:4096])  # fits the pipe's buffer: no writer thread needed
    return os.fdopen(read_end, "rb")


@pytest.mark.parametrize(
    ("make_body", "expected"),
    [pytest.param(_chunks, PAYLOAD, id="generator"), pytest.param(_pipe, PAYLOAD[:4096], id="pipe")],
)
def test_a_body_that_cannot_be_rewound_is_not_retried(
    pool: Callable[..., PoolManager], origins: Origins, script: Script, make_body: Any, expected: bytes
) -> None:
    source = FakeSource()
    script.answers = [401]
    body = make_body()
    try:
        response = pool(source).request("POST", f"{origins.a}/upload", body=body)
    finally:
        if hasattr(body, "close"):
            body.close()
    assert response.status == 401
    assert [(s.authorization, s.body) for s in script.seen] == [("Bearer tok-1", expected)]
    assert source.renewed == []


# -- redirects: urllib3 calls urlopen again for each hop, so the adapter sees them all --------------


def test_a_same_origin_redirect_keeps_the_token(
    pool: Callable[..., PoolManager], origins: Origins, script: Script
) -> None:
    script.answers = [(302, "/moved"), 200]
    assert pool(FakeSource()).request("GET", f"{origins.a}/items").status == 200
    assert [(s.path, s.authorization) for s in script.seen] == [("/items", "Bearer tok-1"), ("/moved", "Bearer tok-1")]


def test_a_hop_to_another_origin_gets_no_token(
    pool: Callable[..., PoolManager], origins: Origins, script: Script
) -> None:
    script.answers = [(302, f"{origins.b}/elsewhere"), 200]
    assert pool(FakeSource()).request("GET", f"{origins.a}/items").status == 200
    assert [(s.port, s.authorization) for s in script.seen][1] == (origins.port_b, None)


def test_a_401_from_another_origin_is_not_retried(
    pool: Callable[..., PoolManager], origins: Origins, script: Script
) -> None:
    source = FakeSource()
    script.answers = [(302, f"{origins.b}/elsewhere"), 401]
    response = pool(source).request("GET", f"{origins.a}/items")
    assert response.status == 401
    assert script.authorizations == ["Bearer tok-1", None]
    assert source.renewed == []


def test_redirect_false_returns_the_redirect(
    pool: Callable[..., PoolManager], origins: Origins, script: Script
) -> None:
    script.answers = [(302, f"{origins.b}/elsewhere")]
    response = pool(FakeSource()).request("GET", f"{origins.a}/items", redirect=False)
    assert response.status == 302
    assert script.authorizations == ["Bearer tok-1"]


def test_a_hop_to_another_origin_gets_no_token_whatever_the_retry_policy(
    pool: Callable[..., PoolManager], origins: Origins, script: Script
) -> None:
    script.answers = [(302, f"{origins.b}/elsewhere"), 200]
    retries = urllib3.Retry(total=3, remove_headers_on_redirect=[])
    assert pool(FakeSource(), retries=retries).request("GET", f"{origins.a}/items").status == 200
    assert script.authorizations == ["Bearer tok-1", None]


def test_a_redirect_back_from_another_origin_gets_no_token(
    pool: Callable[..., PoolManager], origins: Origins, script: Script
) -> None:
    source = FakeSource()
    script.answers = [(302, f"{origins.b}/elsewhere"), (302, f"{origins.a}/chosen-by-b"), 200]
    assert pool(source).request("GET", f"{origins.a}/items").status == 200
    assert [(s.path, s.authorization) for s in script.seen] == [
        ("/items", "Bearer tok-1"),
        ("/elsewhere", None),
        ("/chosen-by-b", None),
    ]


def test_a_401_after_a_same_origin_redirect_renews_once(
    pool: Callable[..., PoolManager], origins: Origins, script: Script
) -> None:
    source = FakeSource()
    script.answers = [(302, "/moved"), 401, (302, "/moved"), 401, 401, 401]
    response = pool(source).request("GET", f"{origins.a}/items")
    assert response.status == 401
    assert source.renewed == ["tok-1"]
    assert len(script.seen) <= 4


# -- which origins get the token ------------------------------------------------------------------


def test_origins_limits_who_gets_the_token(pool: Callable[..., PoolManager], origins: Origins, script: Script) -> None:
    source = FakeSource()
    script.answers = [401, 200]
    http = pool(source, origins=[f"{origins.a}/any/path"])
    assert http.request("GET", f"{origins.b}/not-listed").status == 401
    assert source.calls == []  # not listed: no token work at all, and its 401 is not retried
    assert http.request("GET", f"{origins.a.replace('http:', 'HTTP:')}/listed").status == 200
    assert script.authorizations == [None, "Bearer tok-1"]


def test_a_redirect_into_a_listed_origin_from_an_unlisted_one_gets_no_token(
    pool: Callable[..., PoolManager], origins: Origins, script: Script
) -> None:
    source = FakeSource()
    script.answers = [(302, f"{origins.a}/listed"), 200]
    http = pool(source, origins=[origins.a])
    assert http.request("GET", f"{origins.b}/start").status == 200
    assert script.authorizations == [None, None]
    assert source.calls == []


# -- transport ---------------------------------------------------------------------------------


@pytest.mark.parametrize("allow", [None, ["http://api.example.org"]])
def test_plain_http_to_a_remote_host_is_refused_before_any_token_work(
    pool: Callable[..., PoolManager], allow: list[str] | None
) -> None:
    source = FakeSource()
    with pytest.raises(InsecureTransport):
        pool(source, origins=allow).request("GET", "http://api.example.org/items")
    assert source.calls == []


# -- through a real DeviceAuth (token in the cache, token endpoint on ``responses``) ------------------

ME = (ISSUER, CLIENT_ID, None)


@pytest.fixture
def cached(clock: FakeClock, cache_path: Path) -> Token:
    token = make_token(clock(), lifetime=3600)
    write_cache(cache_path, {ME: token}, server_metadata=metadata())
    return token


@pytest.fixture
def device_auth(cache_path: Path, clock: FakeClock, cached: Token, monkeypatch: pytest.MonkeyPatch) -> DeviceAuth:
    monkeypatch.delenv("DEVICEAUTH_OFFLINE_TOKEN", raising=False)
    return make_auth(cache_path, clock)


def test_device_auth_pool_manager_sends_the_cached_token(
    device_auth: DeviceAuth, cached: Token, origins: Origins, script: Script, mocked: responses.RequestsMock
) -> None:
    script.answers = [200]
    http = device_auth.pool_manager(timeout=urllib3.Timeout(total=5))
    try:
        assert http.request("GET", f"{origins.a}/items").status == 200
    finally:
        http.clear()
    assert http.token_source is device_auth
    assert script.authorizations == [f"Bearer {cached.access_token}"]
    assert len(mocked.calls) == 0


def test_device_auth_pool_manager_refreshes_once_after_a_401(
    device_auth: DeviceAuth, cached: Token, origins: Origins, script: Script, server: FakeAuthServer
) -> None:
    fresh = server.grant()
    script.answers = [401, 200]
    http = device_auth.pool_manager(origins=[origins.a], timeout=urllib3.Timeout(total=5))
    try:
        assert http.request("GET", f"{origins.a}/items").status == 200
    finally:
        http.clear()
    assert script.authorizations == [f"Bearer {cached.access_token}", f"Bearer {fresh['access_token']}"]
    assert [form["refresh_token"] for form in server.token_requests] == [cached.refresh_token]
