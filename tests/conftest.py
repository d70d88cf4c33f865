"""Suite-wide rules: which tests are integration tests, and skipping what needs Node.js when it is absent.

``pytestmark`` in a conftest has no effect, so the ``integration`` marker is applied here to
everything under tests/integration and tests/embedded (real servers on 127.0.0.1): with
``-m "not integration"`` only the unit tests run.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from oidc_server import NodeUnavailable

_TESTS = Path(__file__).resolve().parent
_INTEGRATION_DIRS = (_TESTS / "integration", _TESTS / "embedded")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.path.is_relative_to(directory) for directory in _INTEGRATION_DIRS):
            item.add_marker(pytest.mark.integration)


def _skip_without_node() -> Generator[None, object, object]:
    try:
        return (yield)
    except NodeUnavailable as exc:
        # A test (or fixture) that starts the oidc-provider server directly, on a machine without
        # Node.js: skip it with the reason instead of failing or aborting the whole run.
        pytest.skip(f"needs the oidc-provider test server: {exc}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _skip_without_node())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _skip_without_node())
