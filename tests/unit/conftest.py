"""Fixtures for the unit tests; the fakes themselves live in ``deviceauth_fakes``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from deviceauth_fakes import FakeAuthServer, FakeClock

from deviceauth import _process
from deviceauth._flow import DeviceCode


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    """Each test starts without in-memory identities from earlier tests."""
    _process.clear()
    yield
    _process.clear()


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def server(mocked: responses.RequestsMock) -> FakeAuthServer:
    """Discovery, token and revocation endpoints registered; device endpoint via ``server.device()``."""
    fake = FakeAuthServer(mocked)
    fake.discovery()
    fake.token_endpoint()
    fake.revocation_endpoint()
    return fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / ".tokens.json"


@pytest.fixture
def shown() -> list[DeviceCode]:
    return []
