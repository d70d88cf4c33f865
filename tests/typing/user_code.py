"""Code written the way a user would, checked with ``mypy --strict`` (tests/unit/test_typing.py).

It is type-checked, never run: it would need a server and a person.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import httpx2
import requests
import urllib3

import deviceauth
from deviceauth import (
    AccessDenied,
    DeviceAuth,
    DeviceAuthError,
    DeviceCode,
    InsecureTransport,
    LockTimeout,
    LoginRequired,
    Token,
)
from deviceauth.compat import AuthFlow, DeviceFlowManager

log = logging.getLogger(__name__)


def my_prompt(code: DeviceCode) -> None:
    link: str = code.url
    complete: str | None = code.verification_uri_complete
    seconds_left: float = code.expires_at - 0.0
    interval: float = code.interval
    print(f"open {code.verification_uri} and enter {code.user_code} ({link}, {complete}, {seconds_left}, {interval})")


def build() -> DeviceAuth:
    return DeviceAuth(
        "https://auth.example.org/auth/realms/rrap",
        "client-tools",
        scope=["openid", "profile"],
        cache=Path("~/.cache/myapp/.tokens.json"),
        client_secret=None,
        interactive=None,
        prompt=my_prompt,
        open_browser=False,
        leeway=30.0,
        timeout=10.0,
        lock_timeout=60.0,
        token_endpoint=None,
        device_authorization_endpoint=None,
        revocation_endpoint=None,
        token_endpoint_auth_method=None,
        verify=True,
        offline_token=None,
        store_offline_token=False,
    )


def use_requests(auth: DeviceAuth) -> int:
    response = requests.get("https://api.example.org/items", auth=auth, timeout=10)
    with requests.Session() as session:
        session.auth = auth
        session.get("https://api.example.org/items")
    return response.status_code


def use_httpx(auth: DeviceAuth) -> int:
    with httpx.Client(auth=auth.httpx) as client:
        return client.get("https://api.example.org/items").status_code


async def use_httpx_async(auth: DeviceAuth) -> int:
    async with httpx.AsyncClient(auth=auth.httpx) as client:
        response = await client.get("https://api.example.org/items")
    async with httpx2.AsyncClient(auth=auth.httpx2) as client2:
        await client2.get("https://api.example.org/items")
    return response.status_code


def use_httpx2(auth: DeviceAuth) -> int:
    with httpx2.Client(auth=auth.httpx2) as client:
        return client.get("https://api.example.org/items").status_code


def use_urllib3(auth: DeviceAuth) -> bytes:
    http: urllib3.PoolManager = auth.pool_manager(origins=["https://api.example.org"], num_pools=4)
    response = http.request("GET", "https://api.example.org/items")
    return response.data


def tokens(auth: DeviceAuth) -> str:
    auth.login()
    token: str = auth.get_token()
    cached: Token | None = auth.cached_token()
    if cached is not None:
        log.debug("expires at %s", cached.expires_at)
    removed: bool = bool(auth.logout(revoke=False))
    revoked: bool = auth.logout().revoked
    log.debug("removed: %s %s; cache at %s; issuer %s", removed, revoked, auth.cache_path, auth.issuer)
    return token


def errors(auth: DeviceAuth) -> str | None:
    try:
        return auth.get_token()
    except LoginRequired as e:
        message: str = str(e)
        log.error("run the login command: %s", message)
    except AccessDenied as e:
        log.error("denied: %s", e)
    except LockTimeout as e:
        timeout_error: TimeoutError = e
        log.error("lock: %s", timeout_error)
    except InsecureTransport as e:
        log.error("insecure: %s", e)
    except DeviceAuthError as e:
        log.error("other: %s", e)
    return None


def provena() -> str:
    manager = DeviceFlowManager(
        stage="PROD",
        keycloak_endpoint="https://auth.example.org/auth/realms/rrap",
        auth_flow=AuthFlow.DEVICE,
        offline_token=None,
        client_id="client-tools",
        local_storage_location=".tokens.json",
        local_storage_object=None,
        scopes=["openid"],
        force_token_refresh=False,
        silent=True,
    )
    auth: DeviceAuth = manager.get_auth()
    requests.get("https://api.example.org/items", auth=auth, timeout=10)
    return manager.get_token()


def main() -> None:
    auth = build()
    use_requests(auth)
    use_httpx(auth)
    use_httpx2(auth)
    use_urllib3(auth)
    asyncio.run(use_httpx_async(auth))
    tokens(auth)
    errors(auth)
    provena()
    log.info("deviceauth %s", deviceauth.__version__)
