"""The SDK's test setup: short-lived tokens, so its tests cross refreshes in seconds."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def deviceauth_server_options() -> dict[str, Any]:
    # Keycloak's endpoint layout, like the SDK's production server; 3 s access tokens.
    return {"mode": "keycloak", "access_ttl": 3}
