"""Start and drive the oidc-provider test authorization server (tests/server/server.mjs).

Standard library only, so any test (or benchmark) can use it without extra dependencies::

    with OidcServer(mode="keycloak", access_ttl=2) as server:
        ...  # device authorization at server.issuer, then server.approve(user_code)

The server is a child process with a pipe on its stdin; it exits when that pipe closes, so it
never outlives the Python process even if that one is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

SERVER_DIR = Path(__file__).resolve().parent / "server"
SERVER_SCRIPT = SERVER_DIR / "server.mjs"

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 5.0
_HTTP_TIMEOUT = 10.0

# Loopback only: never let an http_proxy/HTTP_PROXY from the environment intercept these calls.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# Short access tokens so tests cross several expiries in seconds.
ACCESS_TTL = 3


class NodeUnavailable(RuntimeError):
    """Node.js or the server's npm packages are missing; tests that need them are skipped (tests/conftest.py)."""


def node_unavailable_reason() -> str | None:
    """Why the oidc-provider server cannot start here, or None when it can."""
    if shutil.which("node") is None:
        return "`node` (Node.js >= 20) is not on PATH; it runs the oidc-provider test server"
    if not (SERVER_DIR / "node_modules" / "oidc-provider").is_dir():
        return f"{SERVER_DIR / 'node_modules'} is missing: run `npm ci --prefix tests/server` first"
    return None


class OidcServerError(RuntimeError):
    """A test hook answered with an error status (unknown user code, already approved, ...)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class OidcServer:
    """One running test authorization server; see tests/server/server.mjs for what it serves."""

    def __init__(
        self,
        *,
        mode: str = "plain",
        access_ttl: int = 60,
        refresh_ttl: int = 3600,
        device_ttl: int = 600,
        interval: int = 1,
        slow_down: int = 0,
        realm: str = "rrap",
        extra_args: Sequence[str] = (),
    ) -> None:
        if mode not in ("plain", "keycloak"):
            raise ValueError(f"mode must be 'plain' or 'keycloak', not {mode!r}")
        self.mode = mode
        self.args: list[str] = [
            "--host", "127.0.0.1",
            "--port", "0",
            "--mode", mode,
            "--realm", realm,
            "--access-ttl", str(access_ttl),
            "--refresh-ttl", str(refresh_ttl),
            "--device-ttl", str(device_ttl),
            "--interval", str(interval),
            "--slow-down", str(slow_down),
            *extra_args,
        ]  # fmt: skip
        self.issuer = ""
        self.base_url = ""
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("server already started")
        reason = node_unavailable_reason()
        if reason is not None:
            raise NodeUnavailable(reason)
        node = shutil.which("node")
        assert node is not None

        # stderr goes to a file: a pipe nobody reads could fill and block the server.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [node, str(SERVER_SCRIPT), *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=SERVER_DIR,
        )
        try:
            ready = self._wait_ready(_START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        self.port = int(ready["port"])
        self.issuer = str(ready["issuer"])
        self.base_url = str(ready["base_url"])

    def _wait_ready(self, timeout: float) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"test server not ready within {timeout:.0f} s\n{self.stderr_tail()}")
                if not selector.select(remaining):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    code = proc.wait(timeout=_STOP_TIMEOUT)
                    raise RuntimeError(
                        f"test server exited with status {code} before it was ready\n{self.stderr_tail()}"
                    )
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    try:
                        message = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(message, dict) and message.get("ready") is True:
                        return message

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            # Closing stdin is the server's own exit signal; signals are the fallback.
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                proc.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def stderr_tail(self, limit: int = 4000) -> str:
        """The last `limit` characters the server wrote to stderr (for failure messages)."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - limit))
        return self._stderr.read().decode("utf-8", "replace")

    def __enter__(self) -> OidcServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- URLs --------------------------------------------------------------------------------------

    def api_url(self, path: str = "me") -> str:
        return f"{self.base_url}/api/{path.lstrip('/')}"

    # -- test hooks --------------------------------------------------------------------------------

    def approve(self, user_code: str, account_id: str = "alice") -> None:
        """Approve a pending device code as `account_id`; the next poll returns tokens."""
        self._hook("POST", "approve", {"user_code": user_code, "account_id": account_id})

    def deny(self, user_code: str) -> None:
        """Deny a pending device code; the next poll answers `access_denied`."""
        self._hook("POST", "deny", {"user_code": user_code})

    def stats(self) -> dict[str, Any]:
        """Counters since start or the last reset_stats(); see server.mjs emptyStats()."""
        return self._hook("GET", "stats")

    def reset_stats(self) -> None:
        self._hook("POST", "reset")

    def revoke_all(self) -> None:
        """Drop every grant, session, access and refresh token (the server session ends)."""
        self._hook("POST", "revoke-all")

    def _hook(self, method: str, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if not self.base_url:
            raise RuntimeError("server not started")
        data = None if body is None else json.dumps(body).encode()
        # base_url is always http://127.0.0.1:PORT from the server's own ready line.
        request = urllib.request.Request(
            f"{self.base_url}/__test/{name}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with _OPENER.open(request, timeout=_HTTP_TIMEOUT) as response:
                payload = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")
            err.close()
            raise OidcServerError(f"{method} /__test/{name}: {err.code} {detail}", err.code) from None
        result = json.loads(payload) if payload else {}
        if not isinstance(result, dict):
            raise OidcServerError(f"{method} /__test/{name}: unexpected body {payload!r}", 200)
        return result


class Approver:
    """A prompt callback that approves each code at the server, as a person in a browser would."""

    def __init__(self, server: OidcServer) -> None:
        self.server = server
        self.codes: list[Any] = []  # deviceauth.DeviceCode objects, as the prompt received them

    def __call__(self, code: Any) -> None:
        self.codes.append(code)
        self.server.approve(code.user_code)
