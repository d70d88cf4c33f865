"""The HTTP layer: a stdlib ``ThreadingHTTPServer`` that hands each request to ``App.handle``.

HTTP/1.1 with keep-alive (clients reuse connections, as they do with real servers), request
bodies by Content-Length or chunked (HTTPX streams generator bodies chunked), a body size
cap, and a way to close every open connection when the server stops, so no handler thread
serves a request after ``stop()``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._app import App, Request, Response

__all__ = ["HttpServer"]

log = logging.getLogger("deviceauth.testing")

MAX_BODY = 1 << 20  # 1 MiB: more than any test sends, little enough to never matter
IDLE_TIMEOUT = 65.0  # keep idle connections like Keycloak and common proxies (Node's 5 s raced pollers)


class _TooLarge(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "deviceauth-testing"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    # Buffer the writer (headers and body leave in one segment; handle_one_request flushes) and
    # disable Nagle: otherwise a small body waits for the client's delayed ACK, 40 ms a request.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: HttpServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except (_TooLarge, ValueError) as exc:
            self._send(Response.json(413 if isinstance(exc, _TooLarge) else 400, {"error": "invalid_request"}))
            self.close_connection = True
            return
        path, _, query = self.path.partition("?")
        request = Request(self.command, path, query, self.headers, body, self.client_address[0])
        try:
            response = self.server.app.handle(request)
        except Exception:  # a bug in the server must answer 500, not hang the client
            log.exception("embedded server failed on %s %s", self.command, path)
            response = Response.json(500, {"error": "server_error"})
        self._send(response)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > MAX_BODY:
            raise _TooLarge
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"x", 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY:
                raise _TooLarge
            chunks.append(self.rfile.read(size))
            self.rfile.readline(16)  # the CRLF after each chunk
        for _ in range(100):  # trailers, up to the empty line
            if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                break
        return b"".join(chunks)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        names = {name.lower() for name, _ in response.headers}
        for name, value in response.headers:
            self.send_header(name, value)
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines only (no query strings reach here but the path's): never bodies or headers.
        log.debug("%s - %s", self.address_string(), format % args)


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog of 5 drops connections when 200 clients connect at once,
    # and each dropped SYN costs the client a one-second retransmit.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family
        self.app: App  # set by the owner before serving
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can wait on DNS; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every handler blocked on an idle keep-alive connection, so its thread ends."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)
