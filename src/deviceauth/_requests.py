"""The requests side of ``DeviceAuth``: one retry after a 401, in the style of ``HTTPDigestAuth``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

__all__ = ["retry_on_401"]

_RETRIED = "_deviceauth_retried"


def retry_on_401(replace: Callable[[str], str]) -> Callable[..., requests.Response]:
    """A response hook that resends a 401'd request once, with a token different from the failed one.

    It retries only when the failed request carried our bearer token (so a 401 from a host a
    redirect took us to, which requests stripped the header for, is returned as is), only once,
    and only when the body can be sent again.
    """

    def hook(response: requests.Response, **send_kwargs: Any) -> requests.Response:
        request = response.request
        if response.status_code != 401 or getattr(request, _RETRIED, False):
            return response
        sent = str(request.headers.get("Authorization", ""))
        if not sent.startswith("Bearer ") or not _rewindable(request):
            return response
        fresh = replace(sent.removeprefix("Bearer "))
        retry = request.copy()
        _rewind(retry)
        retry.headers["Authorization"] = f"Bearer {fresh}"
        setattr(retry, _RETRIED, True)
        response.content  # drain so the connection goes back to the pool  # noqa: B018
        response.close()
        connection = getattr(response, "connection", None)
        if connection is None:
            return response
        second: requests.Response = connection.send(retry, **send_kwargs)
        second.history.append(response)
        second.request = retry
        return second

    return hook


def _rewindable(request: requests.PreparedRequest) -> bool:
    body = request.body
    if body is None or isinstance(body, bytes | str):
        return True
    # requests records the start position of file bodies; generators have none.
    return isinstance(getattr(request, "_body_position", None), int)


def _rewind(request: requests.PreparedRequest) -> None:
    if isinstance(getattr(request, "_body_position", None), int):
        from requests.utils import rewind_body  # requests is loaded: it sent the request

        rewind_body(request)
