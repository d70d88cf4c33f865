"""Fixtures that start the real test servers on 127.0.0.1; every test using them runs on both.

``oidc-provider``: panva's oidc-provider in Node.js (tests/server/server.mjs, driven by
tests/oidc_server.py). ``embedded``: deviceauth's own ``deviceauth.testing.AuthServer``
(Authlib's server side, in a thread). Both rotate refresh tokens with reuse detection, issue
3 s access tokens, serve a Keycloak-shaped realm and a plain issuer, and count what they see
with the same ``stats()``, so the tests run unchanged on either. Without Node.js the
oidc-provider half is skipped with the reason; the embedded half still runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deviceauth import DeviceAuth
from deviceauth.testing import AuthServer
from oidc_server import ACCESS_TTL, Approver, OidcServer, node_unavailable_reason

SERVER_KINDS = ["oidc-provider", "embedded"]

# Slow tests of the client alone (the server only hands out refresh tokens): one server is
# enough. They run on oidc-provider where Node.js is present, on the embedded server elsewhere.
ONE_SERVER_IS_ENOUGH = {"test_kill_9_during_refresh_and_write_never_corrupts_or_sticks"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if node_unavailable_reason() is not None:
        return
    for item in items:
        callspec = getattr(item, "callspec", None)
        if (
            getattr(item, "originalname", None) in ONE_SERVER_IS_ENOUGH
            and callspec is not None
            and callspec.params.get("server_kind") == "embedded"
        ):
            item.add_marker(
                pytest.mark.skip(reason="one server is enough for this slow client test: oidc-provider runs it")
            )


@pytest.fixture(scope="session", params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    kind = str(request.param)
    if kind == "oidc-provider" and (reason := node_unavailable_reason()) is not None:
        pytest.skip(f"oidc-provider server unavailable: {reason}")
    return kind


@pytest.fixture(scope="session")
def oidc_keycloak_server() -> Iterator[OidcServer]:
    with OidcServer(mode="keycloak", access_ttl=ACCESS_TTL) as server:
        yield server


@pytest.fixture(scope="session")
def oidc_plain_server() -> Iterator[OidcServer]:
    with OidcServer(mode="plain", access_ttl=ACCESS_TTL) as server:
        yield server


@pytest.fixture(scope="session")
def embedded_keycloak_server() -> Iterator[AuthServer]:
    with AuthServer(mode="keycloak", access_ttl=ACCESS_TTL) as server:
        yield server


@pytest.fixture(scope="session")
def embedded_plain_server() -> Iterator[AuthServer]:
    with AuthServer(mode="plain", access_ttl=ACCESS_TTL) as server:
        yield server


def _pick(request: pytest.FixtureRequest, kind: str, mode: str) -> OidcServer:
    prefix = "oidc" if kind == "oidc-provider" else "embedded"
    server: OidcServer = request.getfixturevalue(f"{prefix}_{mode}_server")
    return server


@pytest.fixture
def keycloak_server(server_kind: str, request: pytest.FixtureRequest) -> OidcServer:
    return _pick(request, server_kind, "keycloak")


@pytest.fixture
def plain_server(server_kind: str, request: pytest.FixtureRequest) -> OidcServer:
    return _pick(request, server_kind, "plain")


@pytest.fixture
def server(keycloak_server: OidcServer) -> OidcServer:
    keycloak_server.reset_stats()
    return keycloak_server


@pytest.fixture
def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "cache" / ".tokens.json"


@pytest.fixture
def approver(server: OidcServer) -> Approver:
    return Approver(server)


@pytest.fixture
def make_auth(server: OidcServer, cache_file: Path, approver: Approver) -> Callable[..., DeviceAuth]:
    def make(**kwargs: object) -> DeviceAuth:
        options: dict[str, object] = {
            "scope": "openid",
            "cache": cache_file,
            "prompt": approver,
            "interactive": True,
            "open_browser": False,
        }
        options.update(kwargs)
        return DeviceAuth(server.issuer, "client-tools", **options)  # type: ignore[arg-type]

    return make
