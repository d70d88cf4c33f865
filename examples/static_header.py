"""Recipe: clients that only accept a dict of headers (``headers={"Authorization": ...}`` once).

Two ways, depending on what the client does with the mapping:

1. ``LiveHeaders``: a read-only ``Mapping`` whose ``["Authorization"]`` calls ``get_token()``
   each time it is looked up. Works with clients that keep the mapping and read it per request
   (many do ``{**default_headers, **extra}`` or ``headers.items()`` on each call). It does not help
   a client that copies the values once at construction: that copy is a static token.
2. ``authorization_header(auth)``: a callable returning a fresh ``{"Authorization": ...}``; call it
   right before each request (or pass it where a client takes a header factory).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import deviceauth

__all__ = ["LiveHeaders", "authorization_header"]


class LiveHeaders(Mapping[str, str]):
    """``Authorization: Bearer <current token>`` plus any static headers, computed on each lookup."""

    def __init__(self, auth: deviceauth.DeviceAuth, extra: Mapping[str, str] | None = None) -> None:
        self._auth = auth
        self._extra = {k: v for k, v in (extra or {}).items() if k.lower() != "authorization"}

    def __getitem__(self, key: str) -> str:
        if key.lower() == "authorization":
            return f"Bearer {self._auth.get_token()}"
        return self._extra[key]

    def __iter__(self) -> Iterator[str]:
        yield "Authorization"
        yield from self._extra

    def __len__(self) -> int:
        return 1 + len(self._extra)

    def __repr__(self) -> str:
        # Never render the token.
        return f"LiveHeaders({self._auth!r}, extra={sorted(self._extra)!r})"


def authorization_header(auth: deviceauth.DeviceAuth) -> dict[str, str]:
    """A fresh ``{"Authorization": "Bearer ..."}``; call it per request, never store the result."""
    return {"Authorization": f"Bearer {auth.get_token()}"}
