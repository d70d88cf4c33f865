"""Fixtures for the scenarios on a real Keycloak: one server per test session, realms from JSON.

Every test here is marked ``integration`` and ``keycloak``. Without java or the Keycloak
distribution (``scripts/test`` installs it from Maven Central) the tests are skipped with the
reason, never aborted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kc_approve import FormApprover
from kc_server import START_TIMEOUT, VERSION, Keycloak, missing

from deviceauth import DeviceAuth

HERE = Path(__file__).resolve().parent
REALM, SHORT_REALM = "rrap", "rrap-short"
_started: list[Keycloak] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    first = True
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.keycloak)
            if first:  # its setup starts the session's Keycloak (bounded by START_TIMEOUT)
                item.add_marker(pytest.mark.timeout(START_TIMEOUT + 120))
                first = False


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for server in _started:
        if server.startup_seconds:
            terminalreporter.write_line(f"Keycloak {VERSION} started in {server.startup_seconds:.1f} s")


@pytest.fixture(scope="session")
def keycloak() -> Iterator[Keycloak]:
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    with Keycloak() as server:
        _started.append(server)
        yield server


@pytest.fixture
def kc(keycloak: Keycloak) -> Keycloak:
    """The session's Keycloak with its event log emptied, so a test counts only its own events."""
    keycloak.clear_events(REALM, SHORT_REALM)
    return keycloak


@pytest.fixture
def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "cache" / ".tokens.json"


@pytest.fixture
def approver() -> FormApprover:
    return FormApprover()


@pytest.fixture
def make_auth(kc: Keycloak, cache_file: Path, approver: FormApprover) -> Callable[..., DeviceAuth]:
    def make(realm: str = REALM, **kwargs: object) -> DeviceAuth:
        options: dict[str, object] = {
            "scope": "openid",
            "cache": cache_file,
            "prompt": approver,
            "interactive": True,
            "open_browser": False,
        }
        options.update(kwargs)
        return DeviceAuth(kc.issuer(realm), "client-tools", **options)  # type: ignore[arg-type]

    return make
