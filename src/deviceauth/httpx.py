"""``auth=`` for HTTPX: ``httpx.Client(auth=auth.httpx)`` and ``httpx.AsyncClient(auth=auth.httpx)``."""

from __future__ import annotations

import httpx

from ._httpx_flow import BearerFlow

__all__ = ["HttpxAuth"]


class HttpxAuth(BearerFlow, httpx.Auth):
    """An ``httpx.Auth`` backed by a ``DeviceAuth``; sync and async clients both accept it.

    Usually obtained as ``device_auth.httpx``, which shares the token, cache and lock with every
    other adapter of the same ``DeviceAuth``.
    """
