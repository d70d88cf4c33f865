"""The HTTPX, httpx2 and urllib3 adapters end to end against the real oidc-provider.

Each adapter must behave like the requests one: one login, one refresh per expiry, one retry
after a 401 for our own token (with the body sent again), no token after a cross-origin
redirect, never a token over plain http to a non-loopback host. Counts are taken on the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import httpx2
import pytest
import requests

from deviceauth import DeviceAuth, InsecureTransport
from deviceauth._oauth import OAuthClient
from oidc_server import ACCESS_TTL, OidcServer
from store_helpers import as_a_new_process, rewrite_token

if TYPE_CHECKING:  # conftest is a fixture module: importing it at run time is ambiguous
    from conftest import Approver

REFRESH_GRANT = "refresh_token"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
EXPIRIES = 3  # cross at least this many access-token expiries
LOOP_LIMIT = 11.0  # seconds: 3 expiries take about 3 × 0.75 × ACCESS_TTL after the login
CHUNKS = [b"chunk-%d-" % i * 50 for i in range(20)]
PAYLOAD = b"".join(CHUNKS)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()

SYNC_KINDS = ["httpx", "httpx2", "urllib3"]
ASYNC_KINDS = ["httpx", "httpx2"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- one small facade per client, so every test runs against each of them -------------------------


class Result:
    def __init__(self, status: int, body: bytes, history: list[int] | None = None) -> None:
        self.status = status
        self.body = body
        self.history = history

    def json(self) -> dict[str, Any]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


class SyncCaller:
    """``request(method, url, content)`` on httpx.Client, httpx2.Client or the urllib3 PoolManager."""

    def __init__(self, kind: str, auth: DeviceAuth) -> None:
        self.kind = kind
        if kind == "urllib3":
            self.pool = auth.pool_manager()
        else:
            module: Any = httpx if kind == "httpx" else httpx2
            flow = auth.httpx if kind == "httpx" else auth.httpx2
            self.client = module.Client(auth=flow, follow_redirects=True, timeout=10, trust_env=False)

    def request(self, method: str, url: str, content: Any = None) -> Result:
        if self.kind == "urllib3":
            r = self.pool.request(method, url, body=content, timeout=10.0, redirect=True)
            return Result(r.status, r.data)
        response = self.client.request(method, url, content=content)
        return Result(response.status_code, response.content, [h.status_code for h in response.history])

    def close(self) -> None:
        if self.kind == "urllib3":
            self.pool.clear()
        else:
            self.client.close()


def _async_client(kind: str, auth: DeviceAuth) -> Any:
    module: Any = httpx if kind == "httpx" else httpx2
    flow = auth.httpx if kind == "httpx" else auth.httpx2
    return module.AsyncClient(auth=flow, follow_redirects=True, timeout=10, trust_env=False)


@pytest.fixture(params=SYNC_KINDS)
def sync_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=ASYNC_KINDS)
def async_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- helpers -------------------------------------------------------------------------------------


def _assert_one_login_one_refresh_per_expiry(
    stats: dict[str, Any], approver: Approver, seen: set[str], calls: int
) -> None:
    assert len(approver.codes) == 1
    assert stats["device_authorization"] == 1
    assert stats["token"].get(DEVICE_GRANT) == 1
    refreshes = stats["token"].get(REFRESH_GRANT, 0)
    assert refreshes >= EXPIRIES
    assert refreshes == len(seen) - 1  # every refresh was needed, none repeated
    assert stats["token_errors"].get("invalid_grant", 0) == 0
    assert stats["api"]["unauthorized"] == 0
    assert stats["api"]["ok"] == calls


def _corrupt_cached_access_token(cache_file: Path) -> None:
    """Fresh by the clock, rejected by the API (as after a server-side revocation)."""
    rewrite_token(cache_file, access_token="revoked-or-garbage")


def _expire_cached_access_token(cache_file: Path) -> None:
    rewrite_token(cache_file, expires_at=time.time() - 1)


def _rejecting_auth(make_auth: Callable[..., DeviceAuth], server: OidcServer, cache_file: Path) -> DeviceAuth:
    """A logged-in identity whose cached access token the API will reject, as a new process sees it."""
    make_auth().get_token()
    _corrupt_cached_access_token(cache_file)
    as_a_new_process()
    server.reset_stats()
    return make_auth()


def _assert_one_retry(server: OidcServer) -> None:
    stats = server.stats()
    assert stats["api"] == {"ok": 1, "unauthorized": 1, "redirect": 0}
    assert stats["token"] == {REFRESH_GRANT: 1}


def _chunks() -> Iterator[bytes]:
    yield from CHUNKS


async def _achunks() -> AsyncIterator[bytes]:
    for chunk in CHUNKS:
        yield chunk


# -- login and expiries --------------------------------------------------------------------------


def test_sync_login_and_calls_across_expiries(
    sync_kind: str, server: OidcServer, make_auth: Callable[..., DeviceAuth], approver: Approver
) -> None:
    caller = SyncCaller(sync_kind, make_auth())
    seen: set[str] = set()
    calls = 0
    end = time.monotonic() + LOOP_LIMIT
    try:
        while time.monotonic() < end and len(seen) <= EXPIRIES and calls < 200:
            result = caller.request("GET", server.api_url("items"))
            assert result.status == 200, result.body
            seen.add(result.json()["token_sha256"])
            calls += 1
            time.sleep(0.1)
    finally:
        caller.close()
    _assert_one_login_one_refresh_per_expiry(server.stats(), approver, seen, calls)


@pytest.mark.anyio
async def test_async_login_and_calls_across_expiries(
    async_kind: str, server: OidcServer, make_auth: Callable[..., DeviceAuth], approver: Approver
) -> None:
    seen: set[str] = set()
    calls = 0
    end = time.monotonic() + LOOP_LIMIT
    async with _async_client(async_kind, make_auth()) as client:
        while time.monotonic() < end and len(seen) <= EXPIRIES and calls < 200:
            response = await client.get(server.api_url("items"))
            assert response.status_code == 200, response.text
            seen.add(response.json()["token_sha256"])
            calls += 1
            await anyio.sleep(0.1)
    _assert_one_login_one_refresh_per_expiry(server.stats(), approver, seen, calls)


# -- 401: one refresh, one retry, the body sent again ---------------------------------------------


def test_sync_401_refreshes_once_and_retries_once(
    sync_kind: str, server: OidcServer, make_auth: Callable[..., DeviceAuth], cache_file: Path
) -> None:
    caller = SyncCaller(sync_kind, _rejecting_auth(make_auth, server, cache_file))
    try:
        result = caller.request("GET", server.api_url("items"))
    finally:
        caller.close()
    assert result.status == 200
    if result.history is not None:
        assert result.history == [401]
    _assert_one_retry(server)


@pytest.mark.anyio
async def test_async_401_refreshes_once_and_retries_once(
    async_kind: str, server: OidcServer, make_auth: Callable[..., DeviceAuth], cache_file: Path
) -> None:
    async with _async_client(async_kind, _rejecting_auth(make_auth, server, cache_file)) as client:
        response = await client.get(server.api_url("items"))
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    _assert_one_retry(server)


@pytest.mark.parametrize("body", ["bytes", "file", "generator"])
def test_sync_body_is_sent_again_after_401(
    sync_kind: str,
    body: str,
    server: OidcServer,
    make_auth: Callable[..., DeviceAuth],
    cache_file: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    path = tmp_path / "body.bin"
    path.write_bytes(PAYLOAD)
    caller = SyncCaller(sync_kind, _rejecting_auth(make_auth, server, cache_file))
    try:
        with path.open("rb") as file:
            content: Any = {"bytes": PAYLOAD, "file": file, "generator": _chunks()}[body]
            result = caller.request("POST", server.api_url("upload"), content)
    finally:
        caller.close()
    if sync_kind == "urllib3" and body == "generator":
        # A generator cannot be rewound: the 401 is returned as is, nothing is sent twice.
        assert result.status == 401
        assert server.stats()["api"] == {"ok": 0, "unauthorized": 1, "redirect": 0}
        return
    assert result.status == 200, result.body
    echo = result.json()
    assert echo["body_length"] == len(PAYLOAD)
    assert echo["body_sha256"] == PAYLOAD_SHA
    _assert_one_retry(server)


@pytest.mark.anyio
@pytest.mark.parametrize("body", ["bytes", "file", "generator"])
async def test_async_body_is_sent_again_after_401(
    async_kind: str,
    body: str,
    server: OidcServer,
    make_auth: Callable[..., DeviceAuth],
    cache_file: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    path = tmp_path / "body.bin"
    path.write_bytes(PAYLOAD)
    async with (
        _async_client(async_kind, _rejecting_auth(make_auth, server, cache_file)) as client,
        await anyio.open_file(path, "rb") as file,
    ):
        content: Any = {"bytes": PAYLOAD, "file": file, "generator": _achunks()}[body]
        response = await client.post(server.api_url("upload"), content=content)
    assert response.status_code == 200, response.text
    echo = response.json()
    assert echo["body_length"] == len(PAYLOAD)
    assert echo["body_sha256"] == PAYLOAD_SHA
    assert [r.status_code for r in response.history] == [401]
    _assert_one_retry(server)


# -- redirects -----------------------------------------------------------------------------------


def test_sync_same_origin_redirect_keeps_the_token(
    sync_kind: str, server: OidcServer, make_auth: Callable[..., DeviceAuth]
) -> None:
    auth = make_auth()
    token = auth.get_token()
    server.reset_stats()
    caller = SyncCaller(sync_kind, auth)
    try:
        result = caller.request("GET", server.api_url("redirect-same?to=/api/landed"))
    finally:
        caller.close()
    assert result.status == 200
    assert result.json()["path"] == "/api/landed"
    assert result.json()["token_sha256"] == _sha(token)
    assert server.stats()["api"] == {"ok": 1, "unauthorized": 0, "redirect": 1}


def test_sync_cross_origin_redirect_does_not_send_the_token(
    sync_kind: str, server: OidcServer, make_auth: Callable[..., DeviceAuth], request: pytest.FixtureRequest
) -> None:
    auth = make_auth()
    auth.get_token()
    server.reset_stats()
    caller = SyncCaller(sync_kind, auth)
    try:
        result = caller.request("GET", server.api_url("redirect-cross?to=/api/landed"))
    finally:
        caller.close()
    # The other origin got no token: it answers 401, and that 401 is not ours to retry.
    assert result.status == 401
    stats = server.stats()
    assert stats["api"] == {"ok": 0, "unauthorized": 1, "redirect": 1}
    assert stats["token"] == {}


@pytest.mark.anyio
async def test_async_redirects(async_kind: str, server: OidcServer, make_auth: Callable[..., DeviceAuth]) -> None:
    auth = make_auth()
    token = auth.get_token()
    server.reset_stats()
    async with _async_client(async_kind, auth) as client:
        same = await client.get(server.api_url("redirect-same?to=/api/landed"))
        cross = await client.get(server.api_url("redirect-cross?to=/api/landed"))
    assert same.status_code == 200
    assert same.json()["token_sha256"] == _sha(token)
    assert cross.status_code == 401
    assert "Authorization" not in cross.request.headers
    stats = server.stats()
    assert stats["api"] == {"ok": 1, "unauthorized": 1, "redirect": 2}
    assert stats["token"] == {}


# -- plain http to a non-loopback host: refused before anything is sent -----------------------------


@pytest.mark.parametrize("kind", ["requests", "httpx", "httpx-async", "httpx2", "httpx2-async", "urllib3"])
def test_token_never_sent_over_plain_http_to_a_remote_host(kind: str, make_auth: Callable[..., DeviceAuth]) -> None:
    auth = make_auth()
    auth.get_token()  # a valid token is at hand: only the transport rule stops it
    sent: list[Any] = []

    def handler(request: Any) -> Any:
        sent.append(request)
        return module.Response(200, json={"ok": True})

    url = "http://example.invalid/api/items"
    module: Any = httpx2 if kind.startswith("httpx2") else httpx
    flow = auth.httpx2 if kind.startswith("httpx2") else auth.httpx

    async def call_async() -> None:
        async with module.AsyncClient(auth=flow, transport=module.MockTransport(handler)) as client:
            await client.get(url)

    def call() -> None:
        if kind == "requests":
            requests.get(url, auth=auth, timeout=1)
        elif kind == "urllib3":
            auth.pool_manager().request("GET", url, retries=False)
        elif kind.endswith("-async"):
            asyncio.run(call_async())
        else:
            with module.Client(auth=flow, transport=module.MockTransport(handler)) as client:
                client.get(url)

    with pytest.raises(InsecureTransport):
        call()
    assert sent == []


@pytest.mark.parametrize("module", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_https_to_a_remote_host_gets_the_token(module: Any, make_auth: Callable[..., DeviceAuth]) -> None:
    auth = make_auth()
    token = auth.get_token()
    seen: list[str] = []

    def handler(request: Any) -> Any:
        seen.append(request.headers.get("Authorization", ""))
        return module.Response(200)

    flow = auth.httpx if module is httpx else auth.httpx2
    with module.Client(auth=flow, transport=module.MockTransport(handler)) as client:
        assert client.get("https://api.example.invalid/items").status_code == 200
    assert seen == [f"Bearer {token}"]


# -- one DeviceAuth, every library, one token ----------------------------------------------------------


def test_requests_httpx_urllib3_share_one_token(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], approver: Approver
) -> None:
    auth = make_auth()
    session = requests.Session()
    session.trust_env = False
    client = httpx.Client(auth=auth.httpx, timeout=10, trust_env=False)
    pool = auth.pool_manager()
    calls: list[Callable[[], dict[str, Any]]] = [
        lambda: session.get(server.api_url("r"), auth=auth, timeout=10).json(),
        lambda: client.get(server.api_url("h")).json(),
        lambda: json.loads(pool.request("GET", server.api_url("u"), timeout=10.0).data),
    ]
    seen: set[str] = set()
    by_library: list[set[str]] = [set(), set(), set()]
    count = 0
    end = time.monotonic() + LOOP_LIMIT
    try:
        while time.monotonic() < end and len(seen) <= EXPIRIES and count < 300:
            echo = calls[count % 3]()
            assert "token_sha256" in echo, echo
            seen.add(echo["token_sha256"])
            by_library[count % 3].add(echo["token_sha256"])
            count += 1
            time.sleep(0.05)
    finally:
        session.close()
        client.close()
        pool.clear()
    _assert_one_login_one_refresh_per_expiry(server.stats(), approver, seen, count)
    assert all(len(tokens) >= 2 for tokens in by_library)  # each library saw refreshed tokens too


# -- asyncio: many tasks, one refresh; another event loop; the loop never blocks ----------------------


def test_200_tasks_across_an_expiry_refresh_once_then_a_second_event_loop_works(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], approver: Approver
) -> None:
    auth = make_auth()
    auth.get_token()
    token = auth.cached_token()
    assert token is not None
    time.sleep(max(0.0, token.refresh_due_at(None) - time.time()) + 0.05)  # now due for refresh
    server.reset_stats()

    async def burst(count: int) -> set[str]:
        async with httpx.AsyncClient(auth=auth.httpx, timeout=20, trust_env=False) as client:
            responses = await asyncio.gather(*(client.get(server.api_url(f"t{i}")) for i in range(count)))
        assert all(r.status_code == 200 for r in responses)
        return {r.json()["token_sha256"] for r in responses}

    started = time.monotonic()
    first = asyncio.run(burst(200))
    burst_seconds = time.monotonic() - started
    stats = server.stats()
    refreshes = stats["token"].get(REFRESH_GRANT, 0)
    assert set(stats["token"]) == {REFRESH_GRANT}
    assert stats["api"] == {"ok": 200, "unauthorized": 0, "redirect": 0}
    # Single flight: every refresh produced a token the API then saw (none was duplicated), and a
    # second one happens only if the burst outlived the first new token's 3 s (a loaded machine).
    assert refreshes == len(first)
    assert refreshes <= 1 + int(burst_seconds / (ACCESS_TTL / 2))

    second = asyncio.run(burst(5))  # a new event loop: no loop-bound state was kept
    assert len(second) == 1
    assert server.stats()["token"][REFRESH_GRANT] <= refreshes + 1
    assert server.stats()["api"]["ok"] == 205
    assert len(approver.codes) == 1
    print(f"\n200 concurrent tasks across an expiry: {burst_seconds:.2f} s")


@pytest.mark.anyio
async def test_event_loop_keeps_running_during_a_refresh(
    server: OidcServer, make_auth: Callable[..., DeviceAuth], cache_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await anyio.to_thread.run_sync(lambda: make_auth().get_token())
    _expire_cached_access_token(cache_file)
    as_a_new_process()  # nothing in memory: the next call must refresh
    auth = make_auth()
    server.reset_stats()

    original = OAuthClient.refresh
    refresh_threads: list[str] = []

    def slow_refresh(self: OAuthClient, *args: Any, **kwargs: Any) -> Any:
        refresh_threads.append(threading.current_thread().name)
        time.sleep(0.3)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(OAuthClient, "refresh", slow_refresh)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with (
        httpx.AsyncClient(auth=auth.httpx, timeout=10, trust_env=False) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(ticker)
        await anyio.sleep(0)
        before = ticks
        started = time.monotonic()
        response = await client.get(server.api_url())
        elapsed = time.monotonic() - started
        during = ticks - before
        tg.cancel_scope.cancel()
    assert response.status_code == 200
    assert server.stats()["token"] == {REFRESH_GRANT: 1}
    assert len(refresh_threads) == 1
    assert refresh_threads[0] != threading.main_thread().name  # the refresh ran in a worker thread
    assert elapsed >= 0.3
    assert during >= 10, f"the loop ticked only {during} times in {elapsed:.2f} s"
    print(f"\nticks during a {elapsed:.2f} s refresh: {during}")
