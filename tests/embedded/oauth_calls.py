"""Raw OAuth calls against a server's discovered endpoints (no deviceauth client in the way)."""

from __future__ import annotations

from typing import Any

import requests

from deviceauth.testing import AuthServer

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PUBLIC = "client-tools"


def metadata(http: requests.Session, server: AuthServer) -> dict[str, Any]:
    response = http.get(f"{server.issuer}/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def start(http: requests.Session, server: AuthServer, scope: str = "openid", **data: str) -> dict[str, Any]:
    response = http.post(
        server.urls.device_authorization, data={"client_id": PUBLIC, "scope": scope, **data}, timeout=10
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def token(
    http: requests.Session, server: AuthServer, data: dict[str, str], **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    response = http.post(server.urls.token, data={"client_id": PUBLIC, **data}, timeout=10, **kwargs)
    body: dict[str, Any] = response.json()
    return response.status_code, body


def poll(http: requests.Session, server: AuthServer, device_code: str) -> tuple[int, dict[str, Any]]:
    return token(http, server, {"grant_type": DEVICE_GRANT, "device_code": device_code})


def refresh(http: requests.Session, server: AuthServer, refresh_token: str) -> tuple[int, dict[str, Any]]:
    return token(http, server, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def login(http: requests.Session, server: AuthServer, scope: str = "openid", user: str = "alice") -> dict[str, Any]:
    flow = start(http, server, scope)
    server.approve(flow["user_code"], user)
    status, tokens = poll(http, server, flow["device_code"])
    assert status == 200, tokens
    return tokens


def api(http: requests.Session, server: AuthServer, access_token: str, path: str = "me") -> requests.Response:
    return http.get(server.api_url(path), headers={"Authorization": f"Bearer {access_token}"}, timeout=10)
