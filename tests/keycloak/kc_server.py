"""Start a real Keycloak (the Quarkus distribution ``scripts/test`` unpacks) and read its events.

``Keycloak`` runs ``bin/kc.sh start-dev`` on a free 127.0.0.1 port with an in-memory H2
database and the realms in ``tests/keycloak/realms`` imported. The distribution stays in the
shared cache directory; each run gets its own home directory (``bin`` copied, the rest linked)
so its ``data/`` (import files, transaction logs, temp files) belongs to this run alone.
Standard library and requests only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

VERSION = "26.7.3"  # keep in step with scripts/test
REPO = Path(__file__).resolve().parents[2]
HOME = Path(os.environ.get("DEVICEAUTH_KEYCLOAK_HOME", REPO / ".cache" / "keycloak" / f"keycloak-{VERSION}"))
REALMS = Path(__file__).resolve().parent / "realms"
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-test-only"
CLIENT_ID = "client-tools"
START_TIMEOUT = 240.0  # a first start on a busy 2-core machine also builds Quarkus' augmentation
_PR_SET_PDEATHSIG = 1


def missing() -> str | None:
    """Why Keycloak cannot run here, or None."""
    if shutil.which("java") is None:
        return "java is not on PATH (Keycloak needs OpenJDK 17+): run scripts/test or apt-get install openjdk-17-jre"
    if not (HOME / "bin" / "kc.sh").is_file():
        return f"Keycloak {VERSION} is not installed at {HOME}: run scripts/test (it fetches it from Maven Central)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # If pytest is killed, the kernel sends Keycloak SIGTERM instead of leaving it running.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Keycloak:
    """One running Keycloak; ``issuer(realm)``, the admin API, and event counts."""

    def __init__(self) -> None:
        self.port = 0
        self.base_url = ""
        self.startup_seconds = 0.0
        self._home: Path | None = None
        self._log: Any = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._admin = requests.Session()
        self._admin.trust_env = False

    def __enter__(self) -> Keycloak:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        attach = os.environ.get("DEVICEAUTH_TEST_KEYCLOAK_URL")  # a developer's already running one
        if attach:
            self.base_url = attach.rstrip("/")
            return
        home = self._home = Path(tempfile.mkdtemp(prefix="deviceauth-keycloak-"))
        shutil.copytree(HOME / "bin", home / "bin")  # kc.sh finds its home from its own real path
        for name in ("lib", "conf", "providers", "themes"):
            (home / name).symlink_to(HOME / name)
        (home / "data" / "import").mkdir(parents=True)
        for realm in REALMS.glob("*.json"):
            shutil.copy(realm, home / "data" / "import" / realm.name)
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USER,
            "KC_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
        self._log = (home / "keycloak.log").open("wb")
        started = time.monotonic()
        self._proc = subprocess.Popen(
            [
                str(home / "bin" / "kc.sh"),
                "start-dev",
                "--db=dev-mem",
                "--http-host=127.0.0.1",
                f"--http-port={self.port}",
                "--import-realm",
            ],
            env=env,
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _wait_ready(self, started: float) -> None:
        url = f"{self.issuer('rrap')}/.well-known/openid-configuration"
        while time.monotonic() - started < START_TIMEOUT:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"Keycloak exited with {self._proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if self._admin.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"Keycloak not ready after {START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if self._home is None or not (self._home / "keycloak.log").exists():
            return ""
        return "\n".join((self._home / "keycloak.log").read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._admin.close()
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    # -- what tests use ---------------------------------------------------------------------

    def issuer(self, realm: str) -> str:
        return f"{self.base_url}/realms/{realm}"

    def userinfo_url(self, realm: str) -> str:
        return f"{self.issuer(realm)}/protocol/openid-connect/userinfo"

    def token_url(self, realm: str) -> str:
        return f"{self.issuer(realm)}/protocol/openid-connect/token"

    def _admin_headers(self) -> dict[str, str]:
        response = self._admin.post(
            f"{self.issuer('master')}/protocol/openid-connect/token",
            data={
                "grant_type": "password",
                "client_id": "admin-cli",
                "username": ADMIN_USER,
                "password": ADMIN_PASSWORD,
            },
            timeout=10,
        )
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def events(self, realm: str, types: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Keycloak's own record of what clients did in ``realm`` (admin REST API), oldest first."""
        params: list[tuple[str, str | int]] = [("max", 100_000), *(("type", t) for t in types)]
        response = self._admin.get(
            f"{self.base_url}/admin/realms/{realm}/events", params=params, headers=self._admin_headers(), timeout=10
        )
        response.raise_for_status()
        return sorted(response.json(), key=lambda event: event["time"])

    def count(self, realm: str) -> dict[str, int]:
        """Events by type; an ``_ERROR`` event also counts as ``TYPE:error`` (e.g. ``..._ERROR:slow_down``)."""
        counts: dict[str, int] = {}
        for event in self.events(realm):
            for key in (event["type"], f"{event['type']}:{event.get('error', '')}" if event.get("error") else ""):
                if key:
                    counts[key] = counts.get(key, 0) + 1
        return counts

    def clear_events(self, *realms: str) -> None:
        headers = self._admin_headers()
        for realm in realms:
            self._admin.delete(
                f"{self.base_url}/admin/realms/{realm}/events", headers=headers, timeout=10
            ).raise_for_status()

    def end_sessions(self, realm: str, username: str) -> None:
        """What an administrator's "Sign out" (or the user signing out elsewhere) does: end every session."""
        headers = self._admin_headers()
        users = self._admin.get(
            f"{self.base_url}/admin/realms/{realm}/users",
            params={"username": username, "exact": "true"},
            headers=headers,
            timeout=10,
        )
        users.raise_for_status()
        for user in users.json():
            url = f"{self.base_url}/admin/realms/{realm}/users/{user['id']}/logout"
            self._admin.post(url, headers=headers, timeout=10).raise_for_status()
