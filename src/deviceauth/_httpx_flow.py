"""The auth flow shared by the HTTPX and httpx2 adapters (the two libraries have the same Auth API).

Each library rejects the other's ``Auth`` class, so ``deviceauth.httpx`` and ``deviceauth.httpx2``
each declare a class from this mixin and their library's ``Auth``; the logic exists once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any

import anyio.to_thread

from ._source import TokenSource
from ._transport import check_transport

__all__ = ["BearerFlow"]


class BearerFlow:
    """Adds the bearer token; on a 401 for that token, gets a different one and retries once."""

    def __init__(self, source: TokenSource) -> None:
        self._source = source
        self._vetted_url = ""  # the last https URL check_transport passed: clients repeat URLs

    def _vet(self, request: Any) -> None:
        url = str(request.url)
        if url != self._vetted_url and check_transport(url)[:6] == "https:":  # plain http: every time
            self._vetted_url = url

    # These replace httpx's own sync_auth_flow/async_auth_flow (where httpx would honour
    # requires_request_body), so they buffer a streamed body themselves: a 401 retry resends it.

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        self._vet(request)
        request.read()
        token = self._source.get_token()
        _authorize(request, token)
        response = yield request
        if _rejected(response, token):
            response.read()
            _authorize(request, self._source.renew(token))
            yield request

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        self._vet(request)
        await request.aread()
        # The warm path stays on the loop; store locks and token requests go to a worker thread.
        token = self._source.fresh_token()
        if token is None:
            token = await anyio.to_thread.run_sync(self._source.get_token)
        _authorize(request, token)
        response = yield request
        if _rejected(response, token):
            await response.aread()
            _authorize(request, await anyio.to_thread.run_sync(self._source.renew, token))
            yield request

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._source!r})"


def _authorize(request: Any, token: str) -> None:
    request.headers["Authorization"] = f"Bearer {token}"


def _rejected(response: Any, token: str) -> bool:
    # A redirect to another origin strips our header; a 401 from there is not about our token.
    return bool(response.status_code == 401 and response.request.headers.get("Authorization") == f"Bearer {token}")
