"""The HTTPX and httpx2 adapters on a scripted in-memory transport: the header, one 401 retry, bodies, redirects, async.

Every test runs on both libraries (they share ``BearerFlow`` but not the ``Auth`` base class)
and, where the flow has two paths, on the sync and the async client. Tokens come from
``FakeSource`` so only the adapter is under test; the last tests go through a real
``DeviceAuth`` with a token already in its cache, and no network.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import httpx2
import pytest
import responses
from deviceauth_fakes import CLIENT_ID, ISSUER, FakeAuthServer, FakeClock, make_auth, make_token, metadata, write_cache
from source_fakes import FakeSource

from deviceauth import DeviceAuth, InsecureTransport, Token
from deviceauth._source import TokenSource
from deviceauth.httpx import HttpxAuth
from deviceauth.httpx2 import Httpx2Auth

API_URL = "https://api.example.org/v1/items"
SAME_ORIGIN_URL = "https://api.example.org/v2/items"
OTHER_ORIGIN_URL = "https://files.example.net/blob"
PAYLOAD = bytes(range(256)) * 256  # 64 KiB: more than one chunk of any stream
ADAPTERS: dict[str, type[Any]] = {"httpx": HttpxAuth, "httpx2": Httpx2Auth}

Answer = int | tuple[int, str]  # a status, or a redirect status and its Location


@pytest.fixture(params=sorted(ADAPTERS))
def lib(request: pytest.FixtureRequest) -> Any:
    """The library module (``httpx`` or ``httpx2``): same API, distinct classes."""
    return {"httpx": httpx, "httpx2": httpx2}[request.param]


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def worker_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every function the flow hands to ``anyio.to_thread.run_sync``."""
    calls: list[str] = []
    original = anyio.to_thread.run_sync

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(func, "__name__", repr(func)))
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return calls


def adapter(lib: Any, source: TokenSource) -> Any:
    auth = ADAPTERS[lib.__name__](source)
    assert isinstance(auth, lib.Auth)
    return auth


@dataclass(frozen=True)
class Seen:
    url: str
    authorization: str | None
    body: bytes
    every_authorization: tuple[str, ...] = ()  # all Authorization headers, whatever their case


class Api:
    """The API behind a scripted transport: answers from a script and records what each request carried."""

    def __init__(self, lib: Any, script: list[Answer]) -> None:
        self.lib = lib
        self.script = list(script)
        self.seen: list[Seen] = []
        self.transport = _reading_transport(lib, self.answer)

    def answer(self, request: Any, body: bytes) -> Any:
        authorization = request.headers.get("Authorization")
        every = tuple(request.headers.get_list("Authorization"))
        self.seen.append(Seen(str(request.url), authorization, body, every))
        assert self.script, f"unexpected request #{len(self.seen)} to {request.url}"
        item = self.script.pop(0)
        status, location = (item, None) if isinstance(item, int) else item
        return self.lib.Response(status, headers={"Location": location} if location else {}, text=f"status {status}")

    @property
    def authorizations(self) -> list[str | None]:
        return [seen.authorization for seen in self.seen]


def _reading_transport(lib: Any, answer: Callable[[Any, bytes], Any]) -> Any:
    """A transport that consumes the request stream as a network transport does.

    ``MockTransport`` calls ``request.read()`` first, which buffers a generator or file body in
    the request and would hide a flow that forgets to (the retry would then find the stream spent).
    """

    class Transport(lib.BaseTransport, lib.AsyncBaseTransport):  # type: ignore[misc]
        def handle_request(self, request: Any) -> Any:
            return answer(request, b"".join(request.stream))

        async def handle_async_request(self, request: Any) -> Any:
            return answer(request, b"".join([chunk async for chunk in request.stream]))

    return Transport()


def send(
    lib: Any,
    mode: str,
    auth: Any,
    api: Api,
    url: str = API_URL,
    *,
    method: str = "GET",
    body: Callable[[], dict[str, Any]] = dict,
) -> Any:
    """One request through a new client; ``body()`` builds the body arguments (inside the loop for async)."""
    if mode == "sync":
        with lib.Client(transport=api.transport, auth=auth, follow_redirects=True) as client:
            return client.request(method, url, **body())

    async def run() -> Any:
        async with lib.AsyncClient(transport=api.transport, auth=auth, follow_redirects=True) as client:
            return await client.request(method, url, **body())

    return asyncio.run(run())


def blocking_calls(mode: str) -> list[tuple[str, str | None]]:
    """What the flow asks the source for a warm token: sync may block, async must not."""
    return [("get_token", None)] if mode == "sync" else [("fresh_token", None)]


# -- the header and the 401 retry -------------------------------------------------------------


def test_the_fake_is_a_token_source() -> None:
    assert isinstance(FakeSource(), TokenSource)


def test_sets_the_bearer_header(lib: Any, mode: str) -> None:
    source = FakeSource()
    api = Api(lib, [200])
    response = send(lib, mode, adapter(lib, source), api)
    assert response.status_code == 200
    assert api.authorizations == ["Bearer tok-1"]
    assert source.calls == blocking_calls(mode)


def test_one_401_renews_once_and_retries_with_the_new_token(lib: Any, mode: str) -> None:
    source = FakeSource()
    api = Api(lib, [401, 200])
    response = send(lib, mode, adapter(lib, source), api)
    assert response.status_code == 200
    assert api.authorizations == ["Bearer tok-1", "Bearer tok-2"]
    assert source.renewed == ["tok-1"]
    assert [r.status_code for r in response.history] == [401]


def test_a_second_401_is_returned_as_is(lib: Any, mode: str) -> None:
    source = FakeSource()
    api = Api(lib, [401, 401])
    response = send(lib, mode, adapter(lib, source), api)
    assert response.status_code == 401
    assert api.authorizations == ["Bearer tok-1", "Bearer tok-2"]
    assert source.renewed == ["tok-1"]


@pytest.mark.parametrize("name", ["authorization", "AUTHORIZATION"])
def test_the_token_replaces_the_callers_authorization_header(lib: Any, mode: str, name: str) -> None:
    api = Api(lib, [200])
    send(lib, mode, adapter(lib, FakeSource()), api, body=lambda: {"headers": {name: "Basic dXNlcjpwYXNz"}})
    assert [seen.every_authorization for seen in api.seen] == [("Bearer tok-1",)]


def test_other_statuses_are_not_retried(lib: Any, mode: str) -> None:
    source = FakeSource()
    api = Api(lib, [403])
    assert send(lib, mode, adapter(lib, source), api).status_code == 403
    assert len(api.seen) == 1
    assert source.renewed == []


# -- bodies are buffered, so the retry resends the same bytes -----------------------------------


def _chunks() -> Iterator[bytes]:
    for start in range(0, len(PAYLOAD), 5000):
        yield PAYLOAD[start : start + 5000]


async def _achunks() -> AsyncIterator[bytes]:
    for chunk in _chunks():
        yield chunk


def _body(kind: str, mode: str, file: Any) -> dict[str, Any]:
    if kind == "bytes":
        return {"content": PAYLOAD}
    if kind == "stream":
        return {"content": _chunks() if mode == "sync" else _achunks()}
    if kind == "file":
        return {"content": file}  # a sync client only: httpx reads a file with .read()
    return {"files": {"upload": ("payload.bin", file, "application/octet-stream")}}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        ("sync", "bytes"),
        ("sync", "stream"),
        ("sync", "file"),
        ("sync", "multipart"),
        ("async", "bytes"),
        ("async", "stream"),
        ("async", "multipart"),
    ],
)
def test_the_body_is_replayed_on_the_retry(lib: Any, mode: str, kind: str, tmp_path: Path) -> None:
    source = FakeSource()
    api = Api(lib, [401, 201])
    path = tmp_path / "payload.bin"
    path.write_bytes(PAYLOAD)
    with path.open("rb") as file:
        response = send(lib, mode, adapter(lib, source), api, method="POST", body=lambda: _body(kind, mode, file))
    assert response.status_code == 201
    assert api.authorizations == ["Bearer tok-1", "Bearer tok-2"]
    first, second = (seen.body for seen in api.seen)
    assert _sha256(first) == _sha256(second)
    if kind == "multipart":
        assert PAYLOAD in first
    else:
        assert _sha256(first) == _sha256(PAYLOAD)


# -- redirects: the library follows them inside one flow step -----------------------------------


def test_a_same_origin_redirect_keeps_the_header(lib: Any, mode: str) -> None:
    source = FakeSource()
    api = Api(lib, [(307, SAME_ORIGIN_URL), 200])
    response = send(lib, mode, adapter(lib, source), api)
    assert response.status_code == 200
    assert [(s.url, s.authorization) for s in api.seen] == [
        (API_URL, "Bearer tok-1"),
        (SAME_ORIGIN_URL, "Bearer tok-1"),
    ]


@pytest.mark.parametrize(
    "target", [OTHER_ORIGIN_URL, "https://api.example.org:8443/v1/items", "http://api.example.org/v1/items"]
)
def test_a_cross_origin_redirect_drops_the_header(lib: Any, mode: str, target: str) -> None:
    source = FakeSource()
    api = Api(lib, [(302, target), 200])
    response = send(lib, mode, adapter(lib, source), api)
    assert response.status_code == 200
    assert [(s.url, s.authorization) for s in api.seen] == [(API_URL, "Bearer tok-1"), (target, None)]


def test_a_redirect_back_from_another_origin_stays_without_the_header(lib: Any, mode: str) -> None:
    source = FakeSource()
    api = Api(lib, [(302, OTHER_ORIGIN_URL), (302, SAME_ORIGIN_URL), 401])
    response = send(lib, mode, adapter(lib, source), api)
    assert response.status_code == 401
    assert api.authorizations == ["Bearer tok-1", None, None]
    assert source.renewed == []


def test_a_401_from_another_origin_is_not_retried(lib: Any, mode: str) -> None:
    source = FakeSource()
    api = Api(lib, [(302, OTHER_ORIGIN_URL), 401])
    response = send(lib, mode, adapter(lib, source), api)
    assert response.status_code == 401
    assert api.authorizations == ["Bearer tok-1", None]
    assert source.renewed == []


def test_a_401_after_a_same_origin_redirect_retries_the_whole_call_once(lib: Any, mode: str) -> None:
    source = FakeSource()
    api = Api(lib, [(307, SAME_ORIGIN_URL), 401, (307, SAME_ORIGIN_URL), 401])
    response = send(lib, mode, adapter(lib, source), api)
    assert response.status_code == 401
    assert [(s.url, s.authorization) for s in api.seen] == [
        (API_URL, "Bearer tok-1"),
        (SAME_ORIGIN_URL, "Bearer tok-1"),
        (API_URL, "Bearer tok-2"),
        (SAME_ORIGIN_URL, "Bearer tok-2"),
    ]
    assert source.renewed == ["tok-1"]


# -- transport ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://api.example.org/v1/items", "http://10.0.0.1/", "ftp://127.0.0.1/"])
def test_plain_http_to_a_remote_host_is_refused_before_any_token_work(lib: Any, mode: str, url: str) -> None:
    source = FakeSource(fresh=False)
    api = Api(lib, [200])
    with pytest.raises(InsecureTransport):
        send(lib, mode, adapter(lib, source), api, url)
    assert source.calls == []
    assert api.seen == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]:8080/x"])
def test_plain_http_to_loopback_is_allowed(lib: Any, mode: str, url: str) -> None:
    api = Api(lib, [200])
    assert send(lib, mode, adapter(lib, FakeSource()), api, url).status_code == 200
    assert api.authorizations == ["Bearer tok-1"]


# -- async: the event loop never waits for the store or the server -------------------------------


def test_async_warm_path_starts_no_worker_thread(lib: Any, worker_calls: list[str]) -> None:
    source = FakeSource(fresh=True)
    api = Api(lib, [200])
    assert send(lib, "async", adapter(lib, source), api).status_code == 200
    assert worker_calls == []
    assert source.calls == [("fresh_token", None)]


def test_async_cold_path_gets_the_token_in_a_worker_thread(lib: Any, worker_calls: list[str]) -> None:
    source = FakeSource(fresh=False)
    api = Api(lib, [200])
    assert send(lib, "async", adapter(lib, source), api).status_code == 200
    assert worker_calls == ["get_token"]
    assert source.calls == [("fresh_token", None), ("get_token", None)]
    assert source.blocking_threads != [threading.get_ident()]  # asyncio.run ran the loop on this thread
    assert api.authorizations == ["Bearer tok-1"]


def test_async_renew_runs_in_a_worker_thread(lib: Any, worker_calls: list[str]) -> None:
    source = FakeSource(fresh=True)
    api = Api(lib, [401, 200])
    assert send(lib, "async", adapter(lib, source), api).status_code == 200
    assert worker_calls == ["renew"]
    assert threading.get_ident() not in source.blocking_threads


def test_async_flow_works_in_two_successive_event_loops(lib: Any, worker_calls: list[str]) -> None:
    source = FakeSource(fresh=False)
    auth = adapter(lib, source)
    api = Api(lib, [200, 401, 200])
    assert send(lib, "async", auth, api).status_code == 200
    assert send(lib, "async", auth, api).status_code == 200
    assert worker_calls == ["get_token", "get_token", "renew"]
    assert api.authorizations == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


# -- through a real DeviceAuth (token in the cache, no network) ----------------------------------

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


def test_device_auth_adapter_sends_the_cached_token(
    lib: Any, device_auth: DeviceAuth, cached: Token, mocked: responses.RequestsMock, worker_calls: list[str]
) -> None:
    auth = getattr(device_auth, lib.__name__)
    assert isinstance(auth, ADAPTERS[lib.__name__])
    assert getattr(device_auth, lib.__name__) is auth  # one adapter per DeviceAuth
    assert cached.access_token not in repr(auth)
    api = Api(lib, [200, 200, 200])
    send(lib, "async", auth, api)  # cold: the token is read from the cache in a worker thread
    send(lib, "async", auth, api)  # warm, in a new event loop: from memory, on the loop
    send(lib, "sync", auth, api)
    assert api.authorizations == [f"Bearer {cached.access_token}"] * 3
    assert worker_calls == ["get_token"]
    assert len(mocked.calls) == 0


def test_device_auth_adapter_refreshes_once_after_a_401(
    lib: Any, mode: str, device_auth: DeviceAuth, cached: Token, server: FakeAuthServer
) -> None:
    fresh = server.grant()
    api = Api(lib, [401, 200])
    response = send(lib, mode, getattr(device_auth, lib.__name__), api)
    assert response.status_code == 200
    assert api.authorizations == [f"Bearer {cached.access_token}", f"Bearer {fresh['access_token']}"]
    assert [form["refresh_token"] for form in server.token_requests] == [cached.refresh_token]
