"""Fixtures that start the real oidc-provider test server on 127.0.0.1 (see tests/server/server.mjs)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deviceauth import DeviceAuth
from oidc_server import ACCESS_TTL, Approver, OidcServer

if shutil.which("node") is None:  # pragma: no cover - CI installs node
    pytest.exit("integration tests need Node.js 20 (node) on PATH", returncode=3)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def keycloak_server() -> Iterator[OidcServer]:
    with OidcServer(mode="keycloak", access_ttl=ACCESS_TTL) as server:
        yield server


@pytest.fixture(scope="session")
def plain_server() -> Iterator[OidcServer]:
    with OidcServer(mode="plain", access_ttl=ACCESS_TTL) as server:
        yield server


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
