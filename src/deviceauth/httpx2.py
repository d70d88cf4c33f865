"""``auth=`` for httpx2: ``httpx2.Client(auth=auth.httpx2)`` and ``httpx2.AsyncClient(auth=auth.httpx2)``."""

from __future__ import annotations

import httpx2

from ._httpx_flow import BearerFlow

__all__ = ["Httpx2Auth"]


class Httpx2Auth(BearerFlow, httpx2.Auth):
    """An ``httpx2.Auth`` backed by a ``DeviceAuth`` (httpx2 rejects ``httpx.Auth`` objects, and vice versa)."""
