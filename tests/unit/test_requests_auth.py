"""``DeviceAuth`` as a requests ``auth=``: the header, one retry after a 401, bodies, transport, pickling."""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from deviceauth_fakes import (
    API_URL,
    CLIENT_ID,
    ISSUER,
    FakeAuthServer,
    FakeClock,
    make_auth,
    make_token,
    metadata,
    write_cache,
)

from deviceauth import DeviceAuth, InsecureTransport, LoginRequired, Token
from deviceauth._transport import check_transport

ME = (ISSUER, CLIENT_ID, None)


@pytest.fixture(autouse=True)
def _no_offline_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVICEAUTH_OFFLINE_TOKEN", raising=False)


@pytest.fixture
def token(clock: FakeClock, cache_path: Path) -> Token:
    """A valid token (and the server metadata) already in the cache."""
    cached = make_token(clock(), lifetime=3600)
    write_cache(cache_path, {ME: cached}, server_metadata=metadata())
    return cached


@pytest.fixture
def auth(cache_path: Path, clock: FakeClock, token: Token) -> DeviceAuth:
    return make_auth(cache_path, clock)


class ApiLog:
    """The fake API: answers from a queue and records the Authorization header and body it got."""

    def __init__(self, mock: responses.RequestsMock, statuses: list[int], url: str = API_URL) -> None:
        self.statuses = list(statuses)
        self.seen: list[tuple[str | None, Any]] = []
        for method in (responses.GET, responses.POST, responses.PUT):
            mock.add_callback(method, url, callback=self.answer)

    def answer(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.seen.append((request.headers.get("Authorization"), request.body))
        assert self.statuses, "more API calls than expected"
        status = self.statuses.pop(0)
        return status, {}, f"status {status}"

    @property
    def tokens(self) -> list[str | None]:
        return [header.removeprefix("Bearer ") if header else None for header, _ in self.seen]


def test_sets_the_bearer_header(server: FakeAuthServer, auth: DeviceAuth, token: Token) -> None:
    api = ApiLog(server.mock, [200])
    response = requests.get(API_URL, auth=auth, timeout=5)
    assert response.status_code == 200
    assert api.seen[0][0] == f"Bearer {token.access_token}"
    assert server.token_requests == []


def test_get_token_and_cached_token(server: FakeAuthServer, auth: DeviceAuth, token: Token) -> None:
    assert auth.get_token() == token.access_token
    assert auth.cached_token() == token
    assert auth.issuer == ISSUER
    assert auth.client_id == CLIENT_ID


def test_401_refreshes_once_and_retries_with_the_new_token(
    server: FakeAuthServer, auth: DeviceAuth, token: Token
) -> None:
    api = ApiLog(server.mock, [401, 200])
    body = server.grant()
    response = requests.get(API_URL, auth=auth, timeout=5)
    assert response.status_code == 200
    assert api.tokens == [token.access_token, body["access_token"]]
    assert [form["refresh_token"] for form in server.token_requests] == [token.refresh_token]
    assert [r.status_code for r in response.history] == [401]
    assert response.request.headers["Authorization"] == f"Bearer {body['access_token']}"
    # The next request uses the new token straight away.
    api.statuses.append(200)
    requests.get(API_URL, auth=auth, timeout=5)
    assert api.tokens[-1] == body["access_token"]


def test_only_one_retry_even_if_the_second_answer_is_401(
    server: FakeAuthServer, auth: DeviceAuth, token: Token
) -> None:
    api = ApiLog(server.mock, [401, 401])
    server.grant()
    response = requests.get(API_URL, auth=auth, timeout=5)
    assert response.status_code == 401
    assert len(api.seen) == 2
    assert len(server.token_requests) == 1


def test_401_with_a_session(server: FakeAuthServer, auth: DeviceAuth, token: Token) -> None:
    api = ApiLog(server.mock, [200, 401, 200])
    body = server.grant()
    with requests.Session() as session:
        session.auth = auth
        assert session.get(API_URL, timeout=5).status_code == 200
        assert session.get(API_URL, timeout=5).status_code == 200
    assert api.tokens == [token.access_token, token.access_token, body["access_token"]]


def test_bytes_body_is_replayed(server: FakeAuthServer, auth: DeviceAuth) -> None:
    api = ApiLog(server.mock, [401, 201])
    server.grant()
    response = requests.post(API_URL, data=b"payload-bytes", auth=auth, timeout=5)
    assert response.status_code == 201
    assert [body for _, body in api.seen] == [b"payload-bytes", b"payload-bytes"]


def test_form_body_is_replayed(server: FakeAuthServer, auth: DeviceAuth) -> None:
    api = ApiLog(server.mock, [401, 201])
    server.grant()
    requests.post(API_URL, data={"a": "1"}, auth=auth, timeout=5)
    assert [body for _, body in api.seen] == ["a=1", "a=1"]


def test_generator_body_is_not_retried(server: FakeAuthServer, auth: DeviceAuth) -> None:
    api = ApiLog(server.mock, [401])

    def chunks() -> Iterator[bytes]:
        yield b"one"
        yield b"two"

    response = requests.post(API_URL, data=chunks(), auth=auth, timeout=5)
    assert response.status_code == 401
    assert len(api.seen) == 1
    assert server.token_requests == []


class FileBodyAdapter(requests.adapters.HTTPAdapter):
    """A transport that reads file bodies like a real one does (``responses`` swaps them for bytes)."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__()
        self.statuses = statuses
        self.seen: list[tuple[str | None, bytes]] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        body: Any = request.body
        data = body.read() if hasattr(body, "read") else body
        self.seen.append((request.headers.get("Authorization"), data if isinstance(data, bytes) else b""))
        response = requests.Response()
        response.status_code = self.statuses.pop(0)
        response.raw = io.BytesIO(b"")
        response.url = request.url or ""
        response.request = request
        response.connection = self
        return response


def test_file_body_is_rewound_and_replayed(server: FakeAuthServer, auth: DeviceAuth, token: Token) -> None:
    body = server.grant()
    adapter = FileBodyAdapter([401, 201])
    with requests.Session() as session:
        session.mount("https://api.example.org/", adapter)
        response = session.post(API_URL, data=io.BytesIO(b"file-content"), auth=auth, timeout=5)
    assert response.status_code == 201
    assert adapter.seen == [
        (f"Bearer {token.access_token}", b"file-content"),
        (f"Bearer {body['access_token']}", b"file-content"),
    ]


def test_401_from_a_host_the_token_was_not_sent_to_is_not_retried(
    server: FakeAuthServer, auth: DeviceAuth, token: Token
) -> None:
    other = "https://files.example.net/blob"
    server.mock.add(responses.GET, API_URL, status=302, headers={"Location": other})
    elsewhere = ApiLog(server.mock, [401], url=other)
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(API_URL, auth=auth, timeout=5)
    assert response.status_code == 401
    assert elsewhere.seen[0][0] is None  # requests stripped the header on the way
    assert len(elsewhere.seen) == 1
    assert server.token_requests == []


def test_401_when_the_refresh_token_is_rejected_raises_login_required(server: FakeAuthServer, auth: DeviceAuth) -> None:
    ApiLog(server.mock, [401])
    server.token_answers.append((400, {"error": "invalid_grant"}))
    with pytest.raises(LoginRequired, match="deviceauth login"):
        requests.get(API_URL, auth=auth, timeout=5)


# -- transport --------------------------------------------------------------------------------------


def test_plain_http_to_a_remote_host_is_refused(server: FakeAuthServer, auth: DeviceAuth) -> None:
    api = ApiLog(server.mock, [200], url="http://api.example.org/v1/items")
    with pytest.raises(InsecureTransport) as caught:
        requests.get("http://api.example.org/v1/items", auth=auth, timeout=5)
    assert isinstance(caught.value, ValueError)
    assert "api.example.org" in str(caught.value)
    assert api.seen == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://localhost:8080/x", "http://[::1]:8080/x"])
def test_plain_http_to_loopback_is_allowed(server: FakeAuthServer, auth: DeviceAuth, token: Token, url: str) -> None:
    api = ApiLog(server.mock, [200], url=url)
    assert requests.get(url, auth=auth, timeout=5).status_code == 200
    assert api.seen[0][0] == f"Bearer {token.access_token}"


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/",
        "http://10.0.0.1/",
        "http://localhost.example.org/",
        "http://app.localhost:3000/",
        "ftp://127.0.0.1/",
        "HTTP://example.org/",
        "",
    ],
)
def test_check_transport_refuses(url: str) -> None:
    with pytest.raises(InsecureTransport):
        check_transport(url)


@pytest.mark.parametrize(
    "url", ["https://example.org/", "http://127.0.0.2/", "http://localhost:3000/", "http://[::1]/"]
)
def test_check_transport_allows(url: str) -> None:
    check_transport(url)


# -- pickling ---------------------------------------------------------------------------------------


def test_pickle_round_trip_keeps_settings_and_works(server: FakeAuthServer, cache_path: Path) -> None:
    import time

    valid = make_token(time.time(), lifetime=3600)
    write_cache(cache_path, {(ISSUER, CLIENT_ID, "email openid"): valid})
    auth = DeviceAuth(
        ISSUER + "/", CLIENT_ID, scope=["openid", "email", "openid"], cache=cache_path, interactive=False, leeway=30
    )
    assert auth.get_token() == valid.access_token
    clone = pickle.loads(pickle.dumps(auth))  # noqa: S301 - our own bytes
    assert isinstance(clone, DeviceAuth)
    assert clone is not auth
    assert clone.__getstate__()["settings"] == auth.__getstate__()["settings"]
    assert (clone.issuer, clone.client_id, clone.scope, clone.cache_path) == (
        ISSUER,
        CLIENT_ID,
        "email openid",
        cache_path,
    )
    assert repr(clone) == repr(auth)
    assert clone.get_token() == valid.access_token
    api = ApiLog(server.mock, [200])
    assert requests.get(API_URL, auth=clone, timeout=5).status_code == 200
    assert api.tokens == [valid.access_token]


def test_pickled_state_holds_no_token(server: FakeAuthServer, auth: DeviceAuth, token: Token) -> None:
    auth.get_token()
    data = pickle.dumps(auth)
    assert token.access_token.encode() not in data
    assert str(token.refresh_token).encode() not in data


def test_creating_an_auth_does_no_io(mocked: responses.RequestsMock, tmp_path: Path) -> None:
    cache = tmp_path / "never" / ".tokens.json"
    DeviceAuth(ISSUER, CLIENT_ID, cache=cache)
    assert not cache.parent.exists()
    assert len(mocked.calls) == 0


def test_plain_http_is_refused_before_any_token_work(
    server: FakeAuthServer, cache_path: Path, clock: FakeClock
) -> None:
    auth = make_auth(cache_path, clock)  # empty cache, may not prompt
    with pytest.raises(InsecureTransport):
        requests.get("http://api.example.org/v1/items", auth=auth, timeout=5)
    assert len(server.mock.calls) == 0
