"""Start and stop a private ``redis-server`` for the tests: 127.0.0.1, a free port, a temp dir, a password.

The server runs with ``requirepass`` (the default user) and an ACL user ``deviceauth`` limited to
the keys and channels under ``deviceauth:``, which is the least a deployment should grant; the
tests connect as that user. Persistence is off: a restart loses every key, as a crashed
cache-only Redis would.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
ACL_USER = "deviceauth"
# What the store needs and nothing else; the README shows the same rule.
ACL_RULES = "~deviceauth:* &deviceauth:* +@read +@write +@scripting +@pubsub +@connection +@keyspace -@dangerous +scan"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


def available() -> bool:
    return Path(REDIS_SERVER).is_file()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One running redis-server; ``url(db)`` names it as the ACL user, ``stop()``/``start()`` restart it."""

    def __init__(
        self,
        *,
        bind: tuple[str, ...] = ("127.0.0.1",),
        tls: tuple[Path, Path, Path] | None = None,
        replica_of: RedisServer | None = None,
    ) -> None:
        self.bind = bind
        self.replica_of = replica_of  # a read-only replica of that server (same users and passwords)
        self.tls = tls  # (certificate, key, CA): also serve TLS on tls_port
        self.tls_port = _free_port() if tls is not None else 0
        self.directory = Path(tempfile.mkdtemp(prefix="deviceauth-redis-"))
        self.password = replica_of.password if replica_of else secrets.token_urlsafe(16)
        self.admin_password = replica_of.admin_password if replica_of else secrets.token_urlsafe(16)
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0, *, user: str = ACL_USER, password: str | None = None, host: str = "127.0.0.1") -> str:
        secret = self.password if password is None else password
        return f"redis://{user}:{secret}@{host}:{self.port}/{db}"

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def address(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        (self.directory / "users.acl").write_text(
            f"user default on >{self.admin_password} ~* &* +@all\nuser {ACL_USER} on >{self.password} {ACL_RULES}\n"
        )
        args = [
            REDIS_SERVER,
            "--bind", *self.bind,
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--aclfile", str(self.directory / "users.acl"),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--databases", "64",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of.port), "--masteruser", "default",
                     "--masterauth", self.admin_password, "--replica-read-only", "yes"]  # fmt: skip
        if self.tls is not None:
            cert, key, ca = self.tls
            args += ["--tls-port", str(self.tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                     "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {log}")
            if self._answers():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {_START_TIMEOUT:g} s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(f"AUTH default {self.admin_password}\r\nPING\r\n".encode())
                conn.settimeout(1)
                reply = b""
                for _ in range(10):
                    reply += conn.recv(100)
                    if b"PONG" in reply or b"-" in reply:
                        break
                return b"PONG" in reply
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(_STOP_TIMEOUT)
        self.process = None

    def admin(self) -> redis.Redis:
        """A client as the unrestricted default user, for tests that corrupt, inspect or wipe keys."""
        return redis.Redis(host="127.0.0.1", port=self.port, username="default", password=self.admin_password)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.directory)
