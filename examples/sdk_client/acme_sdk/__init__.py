"""Acme SDK: how a client library embeds deviceauth (its own issuer, client, prompt UI and cache).

Users who already have a ``DeviceAuth`` (say, shared with other tools) pass it in; everyone
else gets one built from the SDK's defaults. Either way every request goes through
``auth.httpx``, so tokens refresh by themselves and are shared with other processes.

    from acme_sdk import AcmeClient

    with AcmeClient("https://api.acme.example") as acme:
        print(acme.get_item("42"))
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

import deviceauth

__all__ = ["AcmeClient", "AcmeError", "show_login"]

DEFAULT_ISSUER = "https://login.acme.example/realms/acme"
DEFAULT_CLIENT_ID = "acme-cli"


class AcmeError(Exception):
    """The Acme API answered with an error."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"Acme API error {status}: {detail}")
        self.status = status


def show_login(code: deviceauth.DeviceCode) -> None:
    """The SDK's own login prompt: its wording, its branding (a GUI SDK would open a dialog here)."""
    print(
        f"[acme] Sign in to Acme: open {code.url}\n[acme] and check that it shows the code {code.user_code}",
        file=sys.stderr,
        flush=True,
    )


def _default_cache() -> Path:
    # One cache per SDK, so its tokens never mix with other deviceauth users' (override with $ACME_TOKENS).
    return Path(os.environ.get("ACME_TOKENS", "~/.cache/acme/.tokens.json")).expanduser()


class AcmeClient:
    """A minimal SDK client.

    :param base_url: the Acme API root.
    :param auth: a ``DeviceAuth`` to use as is (its issuer, client and prompt win).
    :param issuer: / :param client_id: used only when ``auth`` is not given.
    :param prompt: how to show the login code (default: :func:`show_login`).
    :param cache: the token cache (default ``$ACME_TOKENS`` or ``~/.cache/acme/.tokens.json``).
    """

    def __init__(
        self,
        base_url: str,
        auth: deviceauth.DeviceAuth | None = None,
        *,
        issuer: str = DEFAULT_ISSUER,
        client_id: str = DEFAULT_CLIENT_ID,
        scope: str = "openid",
        prompt: Callable[[deviceauth.DeviceCode], None] | None = show_login,
        cache: str | os.PathLike[str] | None = None,
        interactive: bool | None = None,
        timeout: float = 30.0,
    ) -> None:
        if auth is None:
            auth = deviceauth.DeviceAuth(
                issuer,
                client_id,
                scope=scope,
                cache=cache if cache is not None else _default_cache(),
                prompt=prompt,
                interactive=interactive,
            )
        self.auth = auth
        self._http = httpx.Client(base_url=base_url.rstrip("/"), auth=auth.httpx, timeout=timeout)

    def get_item(self, item_id: str) -> dict[str, Any]:
        """``GET /items/{id}`` as a dict."""
        response = self._http.get(f"/items/{item_id}")
        if response.status_code >= 400:
            raise AcmeError(response.status_code, response.text[:200])
        data = response.json()
        if not isinstance(data, dict):
            raise AcmeError(response.status_code, "expected a JSON object")
        return data

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AcmeClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
