"""A hostile authorization server for the unit tests: raw sockets on 127.0.0.1, scripted per test.

Each connection carries one request (every answer says ``Connection: close``); the test's handler
gets the parsed request and the socket and may write anything: a redirect, a 200 MB body, a
gzip bomb, one byte per second, a chunked body cut short. Every byte received is counted, so a
capture server can prove that nothing was sent to it. ``resolve`` maps made-up remote names to
such a server, so no test traffic ever leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

_MAX_REQUEST = 1 << 20


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode("latin-1"), keep_blank_values=True))


Handler = Callable[[Request, socket.socket], None]


@dataclass
class HostileServer:
    """Serves ``handler`` on 127.0.0.1 in daemon threads until ``close()`` (or the ``with`` block ends)."""

    handler: Handler
    tls: ssl.SSLContext | None = None
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    received: int = 0
    sent: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{'localhost' if self.tls else '127.0.0.1'}:{self.port}"

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stopping.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self._lock:
            self.sent += len(data)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(conn)
            conn.settimeout(5)
            try:
                if self.tls is not None:
                    conn = stack.enter_context(self.tls.wrap_socket(conn, server_side=True))
                request = self._read_request(conn)
                if request is None:
                    return
                self.requests.append(request)
                self.handler(request, conn)
            except (OSError, ssl.SSLError):
                pass  # the client gave up (which is often the point of the test)

    def _read_request(self, conn: socket.socket) -> Request | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            self._count(chunk)
            if not chunk or len(data) > _MAX_REQUEST:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = min(int(headers.get("content-length", "0")), _MAX_REQUEST)
        while len(body) < length:
            chunk = conn.recv(65536)
            self._count(chunk)
            if not chunk:
                break
            body += chunk
        return Request(method, path, headers, body)

    def _count(self, chunk: bytes) -> None:
        with self._lock:
            self.received += len(chunk)


def response_head(status: int, headers: dict[str, str] | None = None, reason: str = "Whatever") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def answer(
    server: HostileServer,
    conn: socket.socket,
    status: int = 200,
    body: bytes | str | Any = b"",
    headers: dict[str, str] | None = None,
) -> None:
    """A complete response; ``body`` that is not bytes/str is sent as JSON."""
    if not isinstance(body, bytes | str):
        body = json.dumps(body)
        headers = {"Content-Type": "application/json", **(headers or {})}
    data = body.encode() if isinstance(body, str) else body
    server.send(conn, response_head(status, {"Content-Length": str(len(data)), **(headers or {})}) + data)


def json_server(routes: dict[str, tuple[int, Any]]) -> HostileServer:
    """A well-behaved server: path → (status, JSON body or raw str); 404 for anything else."""

    def handle(request: Request, conn: socket.socket) -> None:
        status, body = routes.get(request.path.partition("?")[0], (404, {"error": "not_found"}))
        answer(server, conn, status, body)

    server = HostileServer(handle)
    return server


def capture_server() -> HostileServer:
    """Records whatever reaches it; a test asserts it received nothing."""

    def handle(request: Request, conn: socket.socket) -> None:
        answer(server, conn, 200, {"access_token": "captured", "token_type": "Bearer"})

    server = HostileServer(handle)
    return server


@contextlib.contextmanager
def resolve(monkeypatch: pytest.MonkeyPatch, names: dict[str, int]) -> Iterator[None]:
    """Name resolution where ``names`` (made-up remote hosts) lead to 127.0.0.1:<port>; other names fail."""
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name in names:
            return real("127.0.0.1", names[name], *args, **kwargs)
        if name in ("localhost", "127.0.0.1", "::1"):
            return real(host, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"test resolver: {name} stays unresolved")

    with monkeypatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", fake)
        yield


def self_signed(directory: Path) -> tuple[ssl.SSLContext, str]:
    """A TLS context for ``localhost``/127.0.0.1 and the CA file a client trusts it with."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / "cert.pem"
    key_file = directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)
