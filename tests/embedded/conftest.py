"""Fixtures for the embedded server's own tests: a fresh server per test, with the knobs it needs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from deviceauth.testing import AuthServer


@pytest.fixture
def make_server() -> Iterator[Callable[..., AuthServer]]:
    """Start an ``AuthServer`` with the given options; stopped when the test ends (it starts in ms)."""
    started: list[AuthServer] = []

    def make(**options: Any) -> AuthServer:
        server = AuthServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., AuthServer]) -> AuthServer:
    return make_server()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # loopback only; ignore any proxy settings
        yield session
