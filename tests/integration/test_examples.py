"""The examples/ recipes, run against the real server: an embedding SDK, an OpenAPI config, header dicts."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
import requests

from deviceauth import DeviceAuth, DeviceCode
from oidc_server import OidcServer

if TYPE_CHECKING:  # conftest is a fixture module: importing it at run time is ambiguous
    from conftest import Approver

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def examples() -> Iterator[dict[str, ModuleType]]:
    paths = [str(EXAMPLES), str(EXAMPLES / "sdk_client")]
    sys.path[:0] = paths
    try:
        import acme_sdk
        import openapi_config
        import static_header

        yield {"acme_sdk": acme_sdk, "openapi_config": openapi_config, "static_header": static_header}
    finally:
        for path in paths:
            sys.path.remove(path)


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_sdk_builds_its_own_auth_with_its_prompt_hook(
    examples: dict[str, Any], server: OidcServer, cache_file: Path
) -> None:
    shown: list[DeviceCode] = []

    def sdk_ui(code: DeviceCode) -> None:  # an application's own login UI, handed to the SDK
        shown.append(code)
        server.approve(code.user_code)

    acme = examples["acme_sdk"].AcmeClient(
        server.base_url + "/api",
        issuer=server.issuer,
        client_id="client-tools",
        prompt=sdk_ui,
        cache=cache_file,
        interactive=True,
    )
    with acme:
        item = acme.get_item("42")
        assert item["path"] == "/api/items/42"
        assert acme.auth.cache_path == cache_file
        assert item["token_sha256"] == _sha(acme.auth.get_token())
    assert len(shown) == 1


def test_sdk_uses_a_given_auth_across_expiries(
    examples: dict[str, Any], server: OidcServer, make_auth: Callable[..., DeviceAuth], approver: Approver
) -> None:
    auth = make_auth()
    seen: set[str] = set()
    calls = 0
    end = time.monotonic() + 8.0
    with examples["acme_sdk"].AcmeClient(server.base_url + "/api", auth) as acme:
        while time.monotonic() < end and len(seen) <= 2 and calls < 100:
            seen.add(acme.get_item(str(calls))["token_sha256"])
            calls += 1
            time.sleep(0.1)
    stats = server.stats()
    assert len(approver.codes) == 1
    assert stats["token"]["refresh_token"] == len(seen) - 1 >= 2
    assert stats["api"] == {"ok": calls, "unauthorized": 0, "redirect": 0}


def test_sdk_default_prompt_shows_code(examples: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code = DeviceCode("ABCD-EFGH", "https://login.example/device", None, time.time() + 600, 5.0, "secret-device-code")
    examples["acme_sdk"].show_login(code)
    err = capsys.readouterr().err
    assert "ABCD-EFGH" in err
    assert "https://login.example/device" in err
    assert "secret-device-code" not in err


def test_openapi_configuration_reads_a_fresh_token_each_time(
    examples: dict[str, Any], server: OidcServer, make_auth: Callable[..., DeviceAuth]
) -> None:
    auth = make_auth()
    config = examples["openapi_config"].DeviceAuthConfiguration(host=server.base_url, auth=auth)
    first = config.access_token
    assert first == auth.get_token()
    token = auth.cached_token()
    assert token is not None
    time.sleep(max(0.0, token.refresh_due_at(None) - time.time()) + 0.05)
    header = config.auth_settings()["bearerAuth"]["value"]  # as the generated ApiClient reads it
    assert header != f"Bearer {first}"
    response = requests.get(server.api_url(), headers={"Authorization": header}, timeout=10)
    assert response.status_code == 200
    assert server.stats()["token"]["refresh_token"] == 1


def test_live_headers_mapping_and_header_factory(
    examples: dict[str, Any], server: OidcServer, make_auth: Callable[..., DeviceAuth]
) -> None:
    module = examples["static_header"]
    auth = make_auth()
    headers = module.LiveHeaders(auth, {"Accept": "application/json"})
    assert dict(headers)["Accept"] == "application/json"
    assert auth.get_token() not in repr(headers)
    first = requests.get(server.api_url(), headers=headers, timeout=10).json()["token_sha256"]
    token = auth.cached_token()
    assert token is not None
    time.sleep(max(0.0, token.refresh_due_at(None) - time.time()) + 0.05)
    # The same mapping object, reused after the token was due: it carries the new token.
    second = requests.get(server.api_url(), headers=headers, timeout=10).json()["token_sha256"]
    assert second != first
    third = requests.get(server.api_url(), headers=module.authorization_header(auth), timeout=10)
    assert third.json()["token_sha256"] == second
    stats = server.stats()
    assert stats["token"]["refresh_token"] == 1
    assert stats["api"]["unauthorized"] == 0
