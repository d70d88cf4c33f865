"""Fakes shared by the unit tests: a clock, an authorization server on ``responses``, cache helpers.

Nothing here touches the network: every HTTP call goes through ``responses``, which answers
unregistered URLs with ``requests.ConnectionError``. Nothing sleeps: the engine and the poller
get ``FakeClock`` and its ``sleep``.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import responses

from deviceauth import DeviceAuth
from deviceauth._engine import TokenEngine
from deviceauth._filestore import FileStore
from deviceauth._flow import DeviceCode
from deviceauth._settings import Identity, Interaction, Settings
from deviceauth._token import Token

ISSUER = "https://auth.example.org/auth/realms/rrap"
CLIENT_ID = "client-tools"
DISCOVERY_URL = f"{ISSUER}/.well-known/openid-configuration"
TOKEN_ENDPOINT = f"{ISSUER}/protocol/openid-connect/token"
DEVICE_ENDPOINT = f"{ISSUER}/protocol/openid-connect/auth/device"
REVOCATION_ENDPOINT = f"{ISSUER}/protocol/openid-connect/revoke"
API_URL = "https://api.example.org/v1/items"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
USER_CODE = "WDJB-MJHT"
DEVICE_CODE = "devcode-SECRET-d3v1c3"


def metadata(**overrides: Any) -> dict[str, Any]:
    """Keycloak-like metadata for ``ISSUER``; pass ``name=None`` to drop an entry."""
    data: dict[str, Any] = {
        "issuer": ISSUER,
        "token_endpoint": TOKEN_ENDPOINT,
        "device_authorization_endpoint": DEVICE_ENDPOINT,
        "revocation_endpoint": REVOCATION_ENDPOINT,
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


class FakeClock:
    """A clock that only moves when told to; ``sleep`` records the wait and advances time."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


_serial = itertools.count(1)


def token_body(
    *,
    expires_in: float | None = 300,
    refresh: bool = True,
    refresh_expires_in: float | None = 1800,
    id_token: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """A token-endpoint success body with unique, recognisable token strings."""
    n = next(_serial)
    body: dict[str, Any] = {"access_token": f"at-SECRET-{n:04d}-aaaa", "token_type": "Bearer"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    if refresh:
        body["refresh_token"] = f"rt-SECRET-{n:04d}-rrrr"
        if refresh_expires_in is not None:
            body["refresh_expires_in"] = refresh_expires_in
    if id_token:
        body["id_token"] = f"idt-SECRET-{n:04d}-iiii"
    body.update(extra)
    return body


def oauth_error(error: str, status: int = 400, description: str | None = None) -> tuple[int, dict[str, Any]]:
    body = {"error": error}
    if description:
        body["error_description"] = description
    return status, body


@dataclass
class FakeAuthServer:
    """An authorization server on ``responses``: discovery, device authorization, token, revocation.

    ``token_answers`` is a queue of ``(status, json body)`` (or an exception to raise) served in
    order by the token endpoint; running out fails the test. Every token request's form is kept
    in ``token_requests``.
    """

    mock: responses.RequestsMock
    token_answers: list[tuple[int, dict[str, Any]] | BaseException] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    device_requests: list[dict[str, str]] = field(default_factory=list)
    revocations: list[dict[str, str]] = field(default_factory=list)
    issued: list[dict[str, Any]] = field(default_factory=list)

    def discovery(self, body: dict[str, Any] | None = None, url: str = DISCOVERY_URL) -> None:
        self.mock.add(responses.GET, url, json=metadata() if body is None else body)

    def device(self, interval: float | None = 5, expires_in: float = 600, complete: bool = True) -> None:
        body: dict[str, Any] = {
            "device_code": DEVICE_CODE,
            "user_code": USER_CODE,
            "verification_uri": f"{ISSUER}/device",
            "expires_in": expires_in,
        }
        if complete:
            body["verification_uri_complete"] = f"{ISSUER}/device?user_code={USER_CODE}"
        if interval is not None:
            body["interval"] = interval

        def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            self.device_requests.append(_form(request))
            return 200, {"Content-Type": "application/json"}, json.dumps(body)

        self.mock.add_callback(responses.POST, DEVICE_ENDPOINT, callback=answer)

    def token_endpoint(self) -> None:
        def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            self.token_requests.append(_form(request))
            assert self.token_answers, f"unexpected token request #{len(self.token_requests)}"
            item = self.token_answers.pop(0)
            if isinstance(item, BaseException):
                raise item
            status, body = item
            if status == 200:
                self.issued.append(body)
            return status, {"Content-Type": "application/json"}, json.dumps(body)

        self.mock.add_callback(responses.POST, TOKEN_ENDPOINT, callback=answer)

    def revocation_endpoint(self) -> None:
        def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            self.revocations.append(_form(request))
            return 200, {}, ""

        self.mock.add_callback(responses.POST, REVOCATION_ENDPOINT, callback=answer)

    def grant(self, **kwargs: Any) -> dict[str, Any]:
        """Queue one successful token answer and return its body."""
        body = token_body(**kwargs)
        self.token_answers.append((200, body))
        return body

    def calls_to(self, url: str) -> int:
        return sum(1 for call in self.mock.calls if call.request.url == url)


def _form(request: requests.PreparedRequest) -> dict[str, str]:
    body = request.body or ""
    if isinstance(body, bytes):
        body = body.decode()
    return dict(urllib.parse.parse_qsl(str(body)))


def make_engine(
    cache_path: Path,
    clock: FakeClock,
    *,
    scope: str | None = None,
    leeway: float | None = None,
    endpoints: tuple[tuple[str, str], ...] = (),
) -> TokenEngine:
    settings = Settings(
        issuer=ISSUER,
        client_id=CLIENT_ID,
        scope=scope,
        leeway=leeway,
        lock_timeout=5.0,
        endpoints=endpoints,
    )
    return TokenEngine(settings, FileStore(cache_path, lock_timeout=5.0), clock=clock, sleep=clock.sleep)


def make_auth(cache_path: Path, clock: FakeClock, **kwargs: Any) -> DeviceAuth:
    """A DeviceAuth on the fake clock, non-interactive and without a browser unless told otherwise."""
    kwargs.setdefault("interactive", False)
    kwargs.setdefault("open_browser", False)
    return DeviceAuth(ISSUER, CLIENT_ID, cache=cache_path, clock=clock, sleep=clock.sleep, **kwargs)


def interactive(shown: list[DeviceCode]) -> Interaction:
    return Interaction(interactive=True, prompt=shown.append, open_browser=False)


NON_INTERACTIVE = Interaction(interactive=False, open_browser=False)


def make_token(
    now: float,
    *,
    n: int | None = None,
    lifetime: float = 300,
    refresh: bool = True,
    refresh_expires_at: float | None = None,
    obtained_ago: float = 0,
) -> Token:
    """A token as the cache would hold it, obtained ``obtained_ago`` seconds before ``now``."""
    n = next(_serial) if n is None else n
    obtained = now - obtained_ago
    return Token(
        access_token=f"at-SECRET-{n:04d}-cccc",
        expires_at=obtained + lifetime,
        obtained_at=obtained,
        refresh_token=f"rt-SECRET-{n:04d}-cccc" if refresh else None,
        refresh_expires_at=refresh_expires_at,
        id_token=f"idt-SECRET-{n:04d}-cccc",
    )


def write_cache(
    path: Path,
    entries: dict[tuple[str, str, str | None], Token],
    *,
    server_metadata: dict[str, Any] | None = None,
) -> None:
    """Store tokens through the file store's own API, as another process would."""
    store_tokens(FileStore(path), entries, server_metadata=server_metadata)


def store_tokens(
    store: Any,
    entries: dict[tuple[str, str, str | None], Token],
    *,
    server_metadata: dict[str, Any] | None = None,
) -> None:
    """Put tokens into any ``TokenStore``, each in its own transaction."""
    for (issuer, client_id, scope), token in entries.items():
        with store.transaction(Identity(issuer, client_id, scope)) as txn:
            txn.put(token, replacing=txn.token.refresh_token if txn.token else None, metadata=server_metadata)


def read_cache(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def cached_token(path: Path, scope: str | None = None) -> Token | None:
    token: Token | None = FileStore(path).read(Identity(ISSUER, CLIENT_ID, scope))
    return token


Sleep = Callable[[float], None]
