"""The main job, end to end on this machine: log in once, then call an API through requests, HTTPX and urllib3.

Starts the Keycloak-shaped test server (tests/server, oidc-provider on 127.0.0.1), shows the
device-login prompt a person would see, approves it the way the person's browser would, and
then calls the protected API across several access-token expiries without asking again.
Run it with scripts/demo.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from deviceauth import DeviceAuth, DeviceCode, default_prompt
from oidc_server import OidcServer


def main() -> int:
    with OidcServer(mode="keycloak", access_ttl=3) as server, tempfile.TemporaryDirectory() as tmp:
        print(f"Authorization server (Keycloak-shaped oidc-provider): {server.issuer}")

        def prompt(code: DeviceCode) -> None:
            default_prompt(code)  # what a person sees on stderr
            server.approve(code.user_code)  # stands in for the person approving in a browser
            print("  (demo: approved the code as the person would)", file=sys.stderr)

        auth = DeviceAuth(
            server.issuer,
            "client-tools",
            scope="openid",
            cache=Path(tmp, ".tokens.json"),
            prompt=prompt,
            interactive=True,
            open_browser=False,
        )
        http = auth.pool_manager()
        with httpx.Client(auth=auth.httpx) as client:
            for round_ in range(4):
                a = requests.get(server.api_url("items"), auth=auth, timeout=10).json()
                b = client.get(server.api_url("items")).json()
                c = http.request("GET", server.api_url("items")).json()
                print(f"round {round_}: requests/httpx/urllib3 called the API as {a['sub']}, {b['sub']}, {c['sub']}")
                time.sleep(2)
        stats = server.stats()
        print(
            f"server saw: {stats['device_authorization']} login, "
            f"{stats['token'].get('refresh_token', 0)} refreshes, {stats['api']['ok']} API calls accepted, "
            f"{stats['api']['unauthorized']} rejected"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
