"""The real OAuthClient against a hostile authorization server on 127.0.0.1.

Redirects, huge, endless, compressed and trickled bodies, bodies cut short, garbage JSON, error
texts that echo secrets, and strict servers: every outcome is a checked dict or a typed
``DeviceAuthError`` without a secret in it, in bounded time and memory.
"""

from __future__ import annotations

import base64
import gzip
import logging
import socket
import time
import traceback
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_http import HostileServer, Request, answer, capture_server, resolve, response_head, self_signed

from deviceauth import (
    AuthorizationError,
    DeviceAuthError,
    DeviceCodeExpired,
    DiscoveryError,
    ServerError,
    TokenRejected,
)
from deviceauth._bounded import MAX_RESPONSE_BYTES
from deviceauth._discovery import discover
from deviceauth._flow import run_device_flow
from deviceauth._oauth import OAuthClient
from deviceauth._token import fingerprint

CLIENT_ID = "client-tools"
SECRET = "cs-SECRET-c1i3nt"
REFRESH = "rt-SECRET-r3fr3sh"
DEVICE_CODE = "devcode-SECRET-d3v1c3"
EVIL = "auth.evil.example"
TOKEN = {"access_token": "at-SECRET-acc3ss", "token_type": "Bearer", "expires_in": 300, "refresh_token": "rt-new"}
DEVICE = {"device_code": DEVICE_CODE, "user_code": "WDJB-MJHT", "verification_uri": "https://v.example/device"}


Handle = Callable[[HostileServer, Request, socket.socket], None]


def serve(handler: Handle) -> HostileServer:
    server: HostileServer = HostileServer(lambda request, conn: handler(server, request, conn))
    return server


def json_answer(body: Any, status: int = 200) -> Handle:
    return lambda server, request, conn: answer(server, conn, status, body)


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    with capture_server() as server, resolve(monkeypatch, {EVIL: server.port}):
        yield server


def public(timeout: float = 5.0) -> OAuthClient:
    return OAuthClient(CLIENT_ID, timeout=timeout)


def confidential(method: str = "client_secret_post", timeout: float = 5.0) -> OAuthClient:
    return OAuthClient(CLIENT_ID, client_secret=SECRET, token_endpoint_auth_method=method, timeout=timeout)


def every_exchange(client: OAuthClient, url: str) -> list[Callable[[], Any]]:
    return [
        lambda: client.request_device_code(url, "openid"),
        lambda: client.poll(url, DEVICE_CODE),
        lambda: client.refresh(url, REFRESH),
        lambda: client.revoke(url, REFRESH, "refresh_token"),
        lambda: discover(client.get, url),
    ]


def rendered(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


# -- redirects ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_no_exchange_follows_a_redirect(capture: HostileServer, status: int) -> None:
    location = f"https://{EVIL}:8443/steal?x=1"
    redirect = serve(
        lambda server, request, conn: answer(
            server, conn, status, f'{{"refresh_token": "{REFRESH}"}}', {"Location": location}
        )
    )
    with redirect:
        for exchange in every_exchange(confidential(), redirect.url + "/token"):
            with pytest.raises(ServerError) as caught:
                exchange()
            message = str(caught.value)
            assert f"https://{EVIL}:8443" in message  # names where it wanted us to go ...
            assert "steal" not in message and REFRESH not in rendered(caught.value)  # ... but not the path or body
            assert not caught.value.transient
    assert len(redirect.requests) == 5
    assert (capture.connections, capture.received) == (0, 0)


def test_https_to_http_downgrade_is_not_followed(capture: HostileServer, tmp_path: Path) -> None:
    context, ca_file = self_signed(tmp_path)
    seen: list[Request] = []

    def handle(request: Request, conn: socket.socket) -> None:
        seen.append(request)
        answer(server, conn, 308, b"", {"Location": f"http://{EVIL}/token"})

    with HostileServer(handle, tls=context) as server:
        client = OAuthClient(
            CLIENT_ID, client_secret=SECRET, token_endpoint_auth_method="client_secret_post", verify=ca_file
        )
        with pytest.raises(ServerError, match=f"http://{EVIL}"):
            client.refresh(server.url + "/token", REFRESH)
    assert len(seen) == 1 and seen[0].form()["refresh_token"] == REFRESH  # TLS worked; the hop did not happen
    assert (capture.connections, capture.received) == (0, 0)


# -- size and time bounds ---------------------------------------------------------------------------


def endless(declared: int | None, piece: bytes = b" " * 65536) -> Handle:
    """Headers, then body bytes for as long as the client reads (a declared length or none at all)."""

    def handle(server: HostileServer, request: Request, conn: socket.socket) -> None:
        headers = {"Content-Type": "application/json"}
        if declared is not None:
            headers["Content-Length"] = str(declared)
        server.send(conn, response_head(200, headers) + b'{"access_token": "')
        while not server.stopping.is_set():
            server.send(conn, piece)

    return handle


@pytest.mark.parametrize("declared", [200 * 1024 * 1024, None])
def test_huge_and_endless_bodies_stop_at_the_cap(declared: int | None) -> None:
    with serve(endless(declared)) as server:
        for exchange in every_exchange(public(), server.url + "/token"):
            with pytest.raises(ServerError, match="larger than 256 KiB"):
                exchange()
    # What the server managed to push: the cap plus what socket buffers hold, never 200 MB.
    assert server.sent < 5 * 20 * 1024 * 1024


def test_gzip_bomb_is_decoded_only_up_to_the_cap() -> None:
    bomb = gzip.compress(b"[" + b" " * (64 * 1024 * 1024) + b"]", compresslevel=9)  # 64 MiB in ~64 KB
    assert len(bomb) < 100 * 1024

    def handle(server: HostileServer, request: Request, conn: socket.socket) -> None:
        head = {"Content-Type": "application/json", "Content-Encoding": "gzip", "Content-Length": str(len(bomb))}
        server.send(conn, response_head(200, head) + bomb)

    with serve(handle) as server:
        client = public()
        tracemalloc.start()
        try:
            with pytest.raises(ServerError, match="larger than 256 KiB"):
                client.refresh(server.url + "/token", REFRESH)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 8 * MAX_RESPONSE_BYTES  # 2 MiB, against 64 MiB had the body been decoded whole


def test_deflate_and_gzip_bodies_within_the_cap_are_decoded() -> None:
    import json

    body = json.dumps(TOKEN).encode()
    for encoding, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):

        def handle(
            server: HostileServer, request: Request, conn: socket.socket, enc: str = encoding, data: bytes = data
        ) -> None:
            head = {"Content-Type": "application/json", "Content-Encoding": enc, "Content-Length": str(len(data))}
            server.send(conn, response_head(200, head) + data)

        with serve(handle) as server:
            assert public().refresh(server.url + "/token", REFRESH)["access_token"] == TOKEN["access_token"]


def test_an_encoding_we_did_not_ask_for_is_refused() -> None:
    def handle(server: HostileServer, request: Request, conn: socket.socket) -> None:
        assert request.headers["accept-encoding"] == "gzip, deflate"
        server.send(conn, response_head(200, {"Content-Encoding": "br", "Content-Length": "4"}) + b"\x00\x01\x02\x03")

    with serve(handle) as server, pytest.raises(ServerError, match="'br'"):
        public().refresh(server.url + "/token", REFRESH)


def trickle(head_too: bool) -> Handle:
    """One byte per 0.25 s (well inside any per-read timeout): the headers too, or only the body."""

    def handle(server: HostileServer, request: Request, conn: socket.socket) -> None:
        data = response_head(200, {"Content-Type": "application/json", "Content-Length": "100000"})
        if not head_too:
            server.send(conn, data)
            data = b""
        data += b'{"access_token": "' + b"x" * 100000
        for byte in data:
            if server.stopping.wait(0.25):
                return
            server.send(conn, bytes([byte]))

    return handle


@pytest.mark.parametrize("head_too", [False, True], ids=["body", "headers"])
def test_a_trickle_ends_at_the_exchange_deadline(head_too: bool) -> None:
    timeout = 1.0
    with serve(trickle(head_too)) as server:
        client = public(timeout=timeout)
        exchanges = every_exchange(client, server.url + "/token")
        for exchange in (exchanges[0], exchanges[2], exchanges[4]):  # our POST, Authlib's POST, our GET
            started = time.monotonic()
            with pytest.raises(ServerError) as caught:
                exchange()
            elapsed = time.monotonic() - started
            assert caught.value.transient
            assert "within 1 s" in str(caught.value)
            # Without the deadline this trickle lasts 7 hours; the bound is generous on a busy machine.
            assert elapsed < 3 * timeout


def test_truncated_chunked_body_is_a_transient_server_error() -> None:
    def handle(server: HostileServer, request: Request, conn: socket.socket) -> None:
        head = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        server.send(conn, response_head(200, head) + b"40\r\n" + b'{"access_token": "at-SECRET-cut')

    with serve(handle) as server:
        for exchange in every_exchange(public(), server.url + "/token")[:4]:
            with pytest.raises(ServerError) as caught:
                exchange()
            assert caught.value.transient


def test_a_body_cut_short_while_polling_is_retried() -> None:
    answers = iter(["cut", "pending", "token"])

    def handle(server: HostileServer, request: Request, conn: socket.socket) -> None:
        if request.path == "/device":
            answer(server, conn, 200, {**DEVICE, "interval": 1})
            return
        step = next(answers)
        if step == "cut":
            server.send(conn, response_head(200, {"Content-Length": "500"}) + b'{"access_tok')
        elif step == "pending":
            answer(server, conn, 400, {"error": "authorization_pending"})
        else:
            answer(server, conn, 200, TOKEN)

    sleeps: list[float] = []
    now = [1000.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with serve(handle) as server:
        token = run_device_flow(
            public(), server.url + "/device", server.url + "/token", "openid",
            show=lambda code: None, clock=lambda: now[0], sleep=sleep,
        )  # fmt: skip
    assert token["access_token"] == TOKEN["access_token"]
    assert len(server.requests) == 4


# -- garbage --------------------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "body",
    ["<html>gateway</html>", "", "[1, 2]", '"a string"', "null", "1e400", DEEP, '{"a": ' * 30_000 + "1" + "}" * 30_000],
    ids=["html", "empty", "array", "string", "null", "number", "deep-array", "deep-object"],
)
def test_garbage_bodies_are_server_errors(body: str) -> None:
    with serve(json_answer(body)) as server:
        for exchange in every_exchange(public(), server.url + "/token")[:3]:
            with pytest.raises(ServerError):
                exchange()
        with pytest.raises(DiscoveryError):
            discover(public().get, server.url)


@pytest.mark.parametrize(
    ("field", "value"),
    [("access_token", 42), ("access_token", ""), ("refresh_token", ["x"]), ("token_type", None), ("scope", {})],
)
def test_token_answers_with_wrong_types_are_server_errors(field: str, value: Any) -> None:
    with serve(json_answer({**TOKEN, field: value})) as server, pytest.raises(ServerError, match=field):
        public().refresh(server.url + "/token", REFRESH)


@pytest.mark.parametrize("raw", ["1e400", "-1e400", "1" + "0" * 400, "[1]", '"soon"', "true", "NaN", "{}"])
def test_unusable_lifetimes_are_dropped_not_fatal(raw: str) -> None:
    body = f'{{"access_token": "at", "token_type": "Bearer", "expires_in": {raw}, "refresh_expires_in": {raw}}}'
    with serve(json_answer(body)) as server:
        token = public().refresh(server.url + "/token", REFRESH)
    assert "refresh_expires_in" not in token
    assert "expires_in" not in token


def test_numeric_strings_and_numbers_become_floats() -> None:
    device = {**DEVICE, "expires_in": "600", "interval": 5}
    with serve(json_answer(device)) as server:
        body = public().request_device_code(server.url + "/device", None)
    assert (body["expires_in"], body["interval"]) == (600.0, 5.0)


# -- secrets in server text -----------------------------------------------------------------------

BASIC = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
ECHO = f"bad {REFRESH} / {DEVICE_CODE} / secret={SECRET} / basic {BASIC} / \x1b[2Jcleared \r\nforged line"


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
@pytest.mark.parametrize("error", ["invalid_grant", "access_denied", "invalid_client", ECHO])
def test_server_text_echoing_secrets_is_redacted(method: str, error: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"error": error, "error_description": ECHO * 3}
    with serve(json_answer(body, status=400)) as server:
        client = confidential(method)
        errors = []
        device, poll, refresh, revoke, _ = every_exchange(client, server.url + "/token")
        sent = [SECRET, BASIC]
        # The client redacts every secret it has sent so far (a server may echo an earlier one).
        for exchange, secret in ((refresh, REFRESH), (poll, DEVICE_CODE), (revoke, None), (device, None)):
            if secret:
                sent.append(secret)
            with pytest.raises(DeviceAuthError) as caught:
                exchange()
            errors.append(caught.value)
            text = rendered(caught.value) + repr(caught.value) + str(getattr(caught.value, "error", ""))
            assert [s for s in sent if s in text] == []
            assert "\x1b" not in str(caught.value) and "\r" not in str(caught.value) and "\n" not in str(caught.value)
            assert len(str(caught.value)) < 600
    assert fingerprint(REFRESH) in str(errors[0])  # the refresh's message says which token it was about
    assert fingerprint(DEVICE_CODE) in str(errors[1])
    for secret in (REFRESH, DEVICE_CODE, SECRET, BASIC):
        assert secret not in caplog.text


def test_terminal_errors_keep_their_types() -> None:
    rejection = json_answer({"error": "invalid_grant", "error_description": "Token is not active"}, 400)
    with serve(rejection) as server, pytest.raises(TokenRejected, match="Token is not active") as rejected:
        public().refresh(server.url + "/token", REFRESH)
    assert rejected.value.error == "invalid_grant"
    with serve(json_answer({"error": "expired_token"}, 400)) as server, pytest.raises(DeviceCodeExpired):
        public().poll(server.url + "/token", DEVICE_CODE)


@pytest.mark.parametrize("error", ["slow_down", "authorization_pending"])
def test_polling_errors_answered_to_a_refresh_are_typed(error: str) -> None:
    with serve(json_answer({"error": error}, 400)) as server:
        with pytest.raises(ServerError) as caught:
            public().refresh(server.url + "/token", REFRESH)
        with pytest.raises(ServerError):
            public().request_device_code(server.url + "/device", None)
    assert isinstance(caught.value, DeviceAuthError)
    assert caught.value.error == error


def test_invalid_scope_names_the_fix() -> None:
    with serve(json_answer({"error": "invalid_scope"}, 400)) as server, pytest.raises(AuthorizationError) as caught:
        public().request_device_code(server.url + "/device", None)
    assert "scope=" in str(caught.value) and "--scope" in str(caught.value)


# -- strict servers (issue 9) ---------------------------------------------------------------------


def strict(server: HostileServer, request: Request, conn: socket.socket, method: str) -> None:
    """oauthlib-like: the exact media type, client_id in the body, and only the client's own auth method."""
    if request.headers.get("content-type") != "application/x-www-form-urlencoded":
        answer(server, conn, 400, {"error": "invalid_request", "error_description": "bad content type"})
        return
    form = request.form()
    basic = request.headers.get("authorization", "")
    needs_client_id = request.path == "/device" or method != "client_secret_basic"
    if needs_client_id and form.get("client_id") != CLIENT_ID:
        answer(server, conn, 400, {"error": "invalid_request", "error_description": "Missing client_id parameter."})
        return
    if method == "client_secret_post" and (basic or form.get("client_secret") != SECRET):
        answer(server, conn, 401, {"error": "invalid_client"})
        return
    if method == "client_secret_basic" and basic != f"Basic {BASIC}":
        answer(server, conn, 401, {"error": "invalid_client"})
        return
    routes = {"/device": DEVICE, "/token": TOKEN, "/revoke": {}}
    answer(server, conn, 200, routes[request.path])


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic", "none"])
def test_a_strict_server_accepts_every_request(method: str) -> None:
    with serve(lambda server, request, conn: strict(server, request, conn, method)) as server:
        client = public() if method == "none" else confidential(method)
        assert client.request_device_code(server.url + "/device", "openid")["device_code"] == DEVICE_CODE
        assert client.poll(server.url + "/token", DEVICE_CODE)["access_token"] == TOKEN["access_token"]
        assert client.refresh(server.url + "/token", REFRESH)["access_token"] == TOKEN["access_token"]
        client.revoke(server.url + "/revoke", REFRESH, "refresh_token")
    assert {r.headers["content-type"] for r in server.requests} == {"application/x-www-form-urlencoded"}
    assert server.requests[0].form()["client_id"] == CLIENT_ID  # the device request, Basic or not
    if method != "client_secret_basic":
        assert all("authorization" not in r.headers for r in server.requests)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500, 503])
def test_a_failed_revocation_is_reported(status: int) -> None:
    refusal = json_answer({"error": "unsupported_token_type"}, status)
    with serve(refusal) as server, pytest.raises(ServerError, match=str(status)) as caught:
        confidential().revoke(server.url + "/revoke", REFRESH, "refresh_token")
    assert caught.value.transient == (status >= 500)
    assert REFRESH not in rendered(caught.value)


# -- arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "5", None, True])
def test_timeout_must_be_finite_and_positive(timeout: Any) -> None:
    with pytest.raises(ValueError, match="timeout"):
        OAuthClient(CLIENT_ID, timeout=timeout)


@pytest.mark.parametrize("method", ["bogus", "private_key_jwt", "", "Client_Secret_Basic"])
def test_unknown_auth_methods_are_refused(method: str) -> None:
    with pytest.raises(ValueError, match="token_endpoint_auth_method"):
        OAuthClient(CLIENT_ID, client_secret=SECRET, token_endpoint_auth_method=method)


def test_a_secret_auth_method_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="client_secret"):
        OAuthClient(CLIENT_ID, token_endpoint_auth_method="client_secret_post")


# -- the catch-all at the exchange boundary -------------------------------------------------------


@pytest.mark.parametrize("raised", [ValueError, TypeError, RecursionError, KeyError, OverflowError])
def test_anything_unexpected_becomes_a_server_error_without_secrets(
    raised: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = confidential()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise raised(f"could not handle {REFRESH} for {SECRET}")

    monkeypatch.setattr(client._session, "refresh_token", broken)
    with pytest.raises(ServerError) as caught:
        client.refresh("https://as.example.org/token", REFRESH)
    assert raised.__name__ in str(caught.value)
    text = rendered(caught.value)
    assert REFRESH not in text and SECRET not in text  # the cause would print them: it is not chained

    def plain(*args: Any, **kwargs: Any) -> Any:
        raise raised("nothing secret here")

    monkeypatch.setattr(client._session, "refresh_token", plain)
    with pytest.raises(ServerError) as caught:
        client.refresh("https://as.example.org/token", REFRESH)
    assert isinstance(caught.value.__cause__, raised)  # kept for debugging when it is safe to show


def test_server_errors_name_the_origin_in_their_url_attribute(mocked: Any) -> None:
    import responses

    from deviceauth import ServerError as _ServerError
    from deviceauth._oauth import OAuthClient as _Client

    endpoint = "https://auth.example.org/realms/x/protocol/openid-connect/token"
    mocked.add(responses.POST, endpoint, status=503, body="down")
    with pytest.raises(_ServerError) as caught:
        _Client("cli", timeout=5).refresh(endpoint, "rt-SECRET-url")
    assert caught.value.url == "https://auth.example.org"
    assert caught.value.transient
