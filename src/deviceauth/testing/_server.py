"""``AuthServer``: the embedded authorization server as an object you start, drive and stop.

with AuthServer(access_ttl=3) as server:          # listening on 127.0.0.1, in a thread
    auth = DeviceAuth(server.issuer, server.client_id, prompt=AutoApprover(server))
    requests.get(server.api_url("me"), auth=auth)
    assert server.stats()["token"]["urn:ietf:params:oauth:grant-type:device_code"] == 1
"""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.error
import urllib.request
from types import TracebackType
from typing import Any

from deviceauth._transport import is_loopback

from ._app import App, Urls
from ._config import ServerConfig
from ._http import HttpServer
from ._store import ControlError, Fault, FaultKind, Store

__all__ = ["AuthServer", "AutoApprover"]

_STOP_TIMEOUT = 5.0
_HTTP_TIMEOUT = 10.0
# Loopback only: never let an http_proxy from the environment see the control calls.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class AuthServer:
    """A small, real RFC 8628 authorization server with a protected API, for demos and tests.

    Built on Authlib's server side (device code and refresh token grants, RFC 7009
    revocation, client authentication for public and confidential clients). Everything is
    in memory. Keyword arguments are the knobs of :class:`ServerConfig` (lifetimes,
    ``mode="keycloak"``, rotation and reuse detection, ``slow_down``, auto-approval, ...).

    It binds 127.0.0.1 on a free port unless told otherwise, and refuses a non-loopback
    ``host`` unless ``allow_remote=True`` (it is a test server: any name signs in). Clients
    that are not on this machine need ``public_url`` (an https URL of a TLS proxy in front),
    since tokens must not travel over plain http.

    Entering the ``with`` block starts it in a daemon thread, already accepting connections.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        public_url: str | None = None,
        **options: Any,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"refusing to listen on {host!r}: the embedded server lets anyone sign in as anyone; "
                "pass allow_remote=True if you really mean to serve other machines"
            )
        self.config = ServerConfig(**options)
        self.host, self._requested_port = host, port
        self.public_url = public_url.rstrip("/") if public_url else None
        self.port = 0
        self._httpd: HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._store: Store | None = None
        self._urls: Urls | None = None
        self._owner_pid = 0

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> AuthServer:
        if self._httpd is not None:
            raise RuntimeError("server already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        httpd = HttpServer((self.host, self._requested_port), family)
        self.port = int(httpd.server_address[1])
        host = f"[{self.host}]" if ":" in self.host else self.host
        base = self.public_url or f"http://{host}:{self.port}"
        self._urls = Urls.build(base, self.config.issuer_path, self.config.mode == "keycloak")
        self._store = Store(self.config)
        self._owner_pid = os.getpid()
        httpd.app = App(self._store, self._urls)
        self._httpd = httpd
        # The socket listens from here on; early connections wait in its backlog.
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"deviceauth-testing:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT)
            self._thread = None

    def __enter__(self) -> AuthServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._urls.issuer if self._urls else "not started"
        return f"AuthServer({where}, mode={self.config.mode!r})"

    # -- where things are -------------------------------------------------------------------------

    @property
    def urls(self) -> Urls:
        if self._urls is None:
            raise RuntimeError("server not started")
        return self._urls

    @property
    def issuer(self) -> str:
        return self.urls.issuer

    @property
    def base_url(self) -> str:
        return self.urls.base

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def client_id(self) -> str:
        """The first public client (``client-tools`` by default)."""
        return next(c.client_id for c in self.config.clients if c.public)

    @property
    def confidential_client(self) -> tuple[str, str]:
        """``(client_id, client_secret)`` of the first confidential client."""
        client = next(c for c in self.config.clients if not c.public)
        assert client.client_secret is not None
        return client.client_id, client.client_secret

    def api_url(self, path: str = "me") -> str:
        return f"{self.base_url}/api/{path.lstrip('/')}"

    def metadata(self) -> dict[str, Any]:
        """The discovery document it serves."""
        return self._app().metadata()

    # -- driving it (in-process; the same actions exist over HTTP under /__test/) -----------------

    def _app(self) -> App:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.app

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("server not started")
        return self._store

    def _forked(self) -> bool:
        # A forked child holds a copy of the store, but the server thread lives in the parent:
        # drive the real one through its control surface instead.
        return self._owner_pid != 0 and os.getpid() != self._owner_pid

    def _remote(self, method: str, name: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (always our own http://127.0.0.1 URL)
            f"{self.base_url}/__test/{name}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with _OPENER.open(request, timeout=_HTTP_TIMEOUT) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")
            err.close()
            raise ControlError(f"{method} /__test/{name}: {detail}", err.code) from None

    def approve(self, user_code: str, account_id: str = "alice") -> None:
        """Approve a pending code as ``account_id``; the next poll gets tokens. ControlError if not pending."""
        if self._forked():
            self._remote("POST", "approve", {"user_code": user_code, "account_id": account_id})
        else:
            self.store.approve(user_code, account_id)

    def deny(self, user_code: str) -> None:
        """Deny a pending code; the next poll gets ``access_denied``."""
        if self._forked():
            self._remote("POST", "deny", {"user_code": user_code})
        else:
            self.store.deny(user_code)

    def pending(self) -> list[dict[str, Any]]:
        """Codes waiting for approval (user code, client, scope), oldest first."""
        if self._forked():
            return list(self._remote("GET", "pending")["pending"])
        return self.store.pending_codes()

    def stats(self) -> dict[str, Any]:
        """Counters since start or ``reset_stats()``: per endpoint, per grant, per error, API outcomes."""
        if self._forked():
            return dict(self._remote("GET", "stats"))
        return self.store.snapshot()

    def reset_stats(self) -> None:
        if self._forked():
            self._remote("POST", "reset")
        else:
            self.store.reset_stats()

    def revoke_all(self) -> int:
        """End every login, as an administrator would; returns how many were live."""
        if self._forked():
            return int(self._remote("POST", "revoke-all")["revoked"])
        return self.store.revoke_all()

    def tokens(self) -> list[dict[str, Any]]:
        """Every token issued (SHA-256 fingerprints, family, expiry, revoked or consumed; never values)."""
        if self._forked():
            return list(self._remote("GET", "tokens")["tokens"])
        return self.store.issued_tokens()

    def inject_fault(
        self,
        kind: FaultKind,
        *,
        endpoint: str = "token",
        grant_type: str | None = None,
        count: int = 1,
        status: int = 503,
        seconds: float = 0.0,
    ) -> None:
        """Make the next ``count`` matching requests fail or stall.

        ``error_before``: answer ``status`` without doing anything. ``error_after``: do the
        work (a refresh token rotates) but answer ``status``, as when a proxy times out.
        ``delay``: wait ``seconds`` first, then answer normally.
        """
        fault = Fault(kind, endpoint, grant_type, count, status, seconds)
        if self._forked():
            self._remote("POST", "faults", fault.as_json())
        else:
            self.store.add_fault(fault)

    def clear_faults(self) -> None:
        if self._forked():
            self._remote("DELETE", "faults")
        else:
            self.store.clear_faults()


class AutoApprover:
    """A ``prompt=`` callback that approves each code at once, as a person in a browser would.

    ``codes`` keeps every ``DeviceCode`` shown, so a test can count the prompts.
    """

    def __init__(self, server: AuthServer, account_id: str = "alice") -> None:
        self.server = server
        self.account_id = account_id
        self.codes: list[Any] = []

    def __call__(self, code: Any) -> None:
        self.codes.append(code)
        self.server.approve(code.user_code, self.account_id)
