"""Attacks on the library from outside, as a hostile server, a planted file or a hostile environment would.

Every test here is an attack that the rest of the suite does not make. A test that passes proves
a defence holds; a test marked ``xfail(strict=True, reason="VULN: ...")`` is a vulnerability that
exists today (it fails while the hole is open, and turns the suite red once someone closes it, so
the mark is removed with the fix). All traffic stays on 127.0.0.1: made-up remote names are
resolved to loopback capture servers, and a "proxy" is a capture server too.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import io
import json
import os
import pickle
import shlex
import socket
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from deviceauth_fakes import (
    CLIENT_ID,
    ISSUER,
    NON_INTERACTIVE,
    FakeAuthServer,
    FakeClock,
    make_engine,
    make_token,
    metadata,
    oauth_error,
    write_cache,
)
from hostile_http import HostileServer, Request, answer, capture_server, resolve

from deviceauth import (
    DeviceAuth,
    DeviceAuthError,
    DeviceCode,
    DiscoveryError,
    InsecureTransport,
    LoginRequired,
    ServerError,
    _process,
)
from deviceauth._cli import main
from deviceauth._oauth import OAuthClient
from deviceauth._transport import check_outbound

SECRET = "cs-SECRET-c1i3nt-0123456789"
REFRESH = "rt-SECRET-r3fr3sh-0123456789abcdef"
DEVICE_CODE = "devcode-SECRET-d3v1c3-0123456789"
EVIL = "auth.evil.example"
SECRETS = (SECRET, REFRESH, DEVICE_CODE)


def rendered(error: BaseException) -> str:
    """Everything a traceback would print, the whole ``__cause__``/``__context__`` chain included."""
    return "".join(traceback.format_exception(error))


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets or SECRETS:
        assert secret not in text


Route = Callable[[HostileServer, Request, socket.socket], None]


def serve(routes: dict[str, Route]) -> HostileServer:
    """A hostile server whose answer per path is a function of the server (its URL depends on its port)."""

    def handle(request: Request, conn: socket.socket) -> None:
        route = routes.get(request.path.partition("?")[0])
        if route is None:
            answer(server, conn, 404, {"error": "not_found"})
        else:
            route(server, request, conn)

    server = HostileServer(handle)
    return server


def json_route(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Route:
    return lambda server, request, conn: answer(server, conn, status, body, headers)


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    with capture_server() as server, resolve(monkeypatch, {EVIL: server.port}):
        yield server


@pytest.fixture
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean proxy environment, so each proxy test sets only what it means to."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def cached_auth(cache_path: Path, issuer: str = ISSUER, **kwargs: Any) -> DeviceAuth:
    """An identity whose valid token is already in the cache: API calls need no OAuth traffic."""
    clock = FakeClock()
    write_cache(cache_path, {(issuer, CLIENT_ID, None): make_token(clock.now, lifetime=3600)})
    return DeviceAuth(issuer, CLIENT_ID, cache=cache_path, interactive=False, open_browser=False, **kwargs)


# -- the loopback rule: spellings that look like loopback, or are loopback written oddly ----------------


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost./token",  # trailing dot: a DNS name, not the loopback special case
        "http://127.0.0.1.:8080/token",
        "http://127.1/token",  # inet_aton short forms reach 127.0.0.1 but are not what ipaddress reads
        "http://0x7f.1/token",
        "http://0x7f000001/token",
        "http://2130706433/token",  # decimal
        "http://017700000001/token",  # octal
        "http://127.000.000.001/token",
        "http://0/token",  # 0.0.0.0: "this host", reachable from outside when a server binds it
        "http://[::]/token",
        "http://[::1%25lo]/token",  # zone id
        "http://localhost.evil.example/token",
        "http://127.0.0.1.nip.io/token",
        "http://xn--lcalhost-9za/token",  # IDNA look-alike
        "http://lоcalhost/token",  # Cyrillic o
        "http://localhost:+80/token",
        "http://localhost:0/token",
        "http://localhost:65536/token",
        "http://[::ffff:7f00:1]x/token",
    ],
)
def test_loopback_lookalikes_over_plain_http_are_refused(url: str) -> None:
    with pytest.raises(InsecureTransport):
        check_outbound(url)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://LOCALHOST/x", "http://localhost:80"),
        ("HTTP://127.0.0.1:080/x", "http://127.0.0.1:80"),
        ("http://127.0.0.1:80/x", "http://127.0.0.1:80"),
        ("http://[0:0:0:0:0:0:0:1]:9/x", "http://0:0:0:0:0:0:0:1:9"),
        ("https://AUTH.Example.ORG./x", "https://auth.example.org.:443"),
    ],
)
def test_case_and_port_spellings_collapse_to_one_origin(url: str, origin: str) -> None:
    assert check_outbound(url) == origin


def test_a_dot_localhost_name_is_not_trusted_without_resolving_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # The capture server stands in for the remote host a resolver (search domain, hostile Wi-Fi DNS)
    # maps "tokens.localhost" to: plain http must never carry the refresh token there.
    client = OAuthClient(CLIENT_ID, timeout=3)
    with (
        capture_server() as remote,
        resolve(monkeypatch, {"tokens.localhost": remote.port}),
        contextlib.suppress(DeviceAuthError),
    ):
        client.refresh(f"http://tokens.localhost:{remote.port}/token", REFRESH)
    assert REFRESH not in repr(remote.requests)
    assert remote.received == 0


# -- proxies from the environment -----------------------------------------------------------------------


@pytest.mark.usefixtures("no_proxy_settings")
def test_an_environment_proxy_never_gets_a_plain_http_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    with capture_server() as proxy, serve({"/token": json_route({"error": "invalid_grant"}, 400)}) as issuer:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        client = OAuthClient(CLIENT_ID, client_secret=SECRET, token_endpoint_auth_method="client_secret_post")
        with contextlib.suppress(DeviceAuthError):
            client.refresh(issuer.url + "/token", REFRESH)
        seen = b"".join(request.body for request in proxy.requests).decode("latin-1")
        assert REFRESH not in seen and SECRET not in seen
        assert proxy.received == 0


@pytest.mark.usefixtures("no_proxy_settings")
def test_an_environment_proxy_for_https_sees_only_the_connect(
    monkeypatch: pytest.MonkeyPatch, capture: HostileServer
) -> None:
    # https through a proxy is a CONNECT tunnel: the proxy learns the host name, never the body.
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{capture.port}")
    client = OAuthClient(CLIENT_ID, client_secret=SECRET, token_endpoint_auth_method="client_secret_post", timeout=3)
    with pytest.raises(DeviceAuthError) as caught:
        client.refresh(f"https://{EVIL}/token", REFRESH)
    assert [request.method for request in capture.requests] == ["CONNECT"]
    assert_no_secret(repr(capture.requests) + rendered(caught.value))


@pytest.mark.usefixtures("no_proxy_settings")
def test_requests_adapter_token_never_reaches_an_environment_proxy(
    monkeypatch: pytest.MonkeyPatch, cache_path: Path
) -> None:
    auth = cached_auth(cache_path)
    with capture_server() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        with contextlib.suppress(DeviceAuthError, requests.RequestException):
            requests.get("http://127.0.0.1:9/v1/items", auth=auth, timeout=3)
        assert not any("authorization" in request.headers for request in proxy.requests)


@pytest.mark.usefixtures("no_proxy_settings")
def test_httpx_adapter_token_never_reaches_an_environment_proxy(
    monkeypatch: pytest.MonkeyPatch, cache_path: Path
) -> None:
    auth = cached_auth(cache_path)
    with capture_server() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        try:
            with httpx.Client(auth=auth.httpx, timeout=3) as client:
                client.get("http://127.0.0.1:9/v1/items")
        except (DeviceAuthError, httpx.HTTPError):
            pass
        assert not any("authorization" in request.headers for request in proxy.requests)


@pytest.mark.usefixtures("no_proxy_settings")
def test_urllib3_adapter_ignores_environment_proxies(monkeypatch: pytest.MonkeyPatch, cache_path: Path) -> None:
    auth = cached_auth(cache_path)
    with capture_server() as proxy, capture_server() as api:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        assert auth.pool_manager(retries=False).request("GET", api.url + "/v1/items", timeout=3).status == 200
        assert proxy.connections == 0
        assert api.requests[0].headers["authorization"].startswith("Bearer ")


# -- discovery: redirects and endpoints spelled to slip past the policy -----------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirected_discovery_is_an_error_and_nothing_reaches_the_target(
    capture: HostileServer, cache_path: Path, status: int
) -> None:
    location = {"Location": f"https://{EVIL}/.well-known/openid-configuration"}
    with serve({}) as issuer:
        path = "/realms/r/.well-known/openid-configuration"
        issuer.handler = lambda request, conn: answer(issuer, conn, status, b"", location)
        realm = issuer.url + "/realms/r"
        write_cache(cache_path, {(realm, CLIENT_ID, None): make_token(0, lifetime=1, n=1)})  # must refresh
        auth = DeviceAuth(realm, CLIENT_ID, cache=cache_path, interactive=False)
        with pytest.raises(DeviceAuthError) as caught:
            auth.get_token()
    assert issuer.requests and issuer.requests[0].path == path
    assert (capture.connections, capture.received) == (0, 0)
    assert EVIL in str(caught.value)  # says where it was sent, so the user can fix the issuer


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://LOCALHOST.:{port}/token",
        "http://0x7f.1:{port}/token",
        "http://2130706433:{port}/token",
        "HTTP://" + EVIL + "/token",
        "https://" + EVIL + "\\@127.0.0.1:{port}/token",
        "https://127.0.0.1:{port}%2f@" + EVIL + "/token",
        " https://127.0.0.1:{port}/token",
        "https://127.0.0.1:{port}/token\r\nX-Injected: 1",
        "javascript:alert(1)//{port}",
        "//" + EVIL + "/token",
        "/token",
    ],
)
def test_discovered_token_endpoints_spelled_to_slip_past_are_refused(
    capture: HostileServer, cache_path: Path, endpoint: str
) -> None:
    routes: dict[str, Route] = {}
    with serve(routes) as issuer:
        realm = issuer.url + "/realms/r"
        routes["/realms/r/.well-known/openid-configuration"] = json_route(
            {"issuer": realm, "token_endpoint": endpoint.format(port=issuer.port)}
        )
        write_cache(cache_path, {(realm, CLIENT_ID, None): make_token(0, lifetime=1, n=1)})
        auth = DeviceAuth(realm, CLIENT_ID, cache=cache_path, interactive=False, client_secret=SECRET)
        with pytest.raises(DeviceAuthError) as caught:
            auth.get_token()
        assert [request.path for request in issuer.requests] == ["/realms/r/.well-known/openid-configuration"]
    assert isinstance(caught.value, DiscoveryError | InsecureTransport | LoginRequired)
    assert (capture.connections, capture.received) == (0, 0)
    assert "\r" not in str(caught.value) and "\n" not in str(caught.value)
    assert_no_secret(rendered(caught.value), SECRET, "rt-SECRET-0001-cccc")


# -- server text that echoes a secret, disguised -----------------------------------------------------------


def echoed_refresh_error(description: Any, *, status: int = 400, headers: dict[str, str] | None = None) -> str:
    """Everything a failed refresh renders when the server answers with ``description``."""
    body = {"error": "invalid_grant", "error_description": description}
    with serve({"/token": json_route(body, status, headers)}) as issuer:
        client = OAuthClient(CLIENT_ID, client_secret=SECRET, token_endpoint_auth_method="client_secret_post")
        with pytest.raises(DeviceAuthError) as caught:
            client.refresh(issuer.url + "/token", REFRESH)
    return rendered(caught.value)


@pytest.mark.parametrize(
    "split",
    ["\u200b", "\u2060", "\ufeff", "\u00ad", "\u200d", "\u061c", "\U000e0041", "\x1b", "\r", "\x00"],
)
def test_a_secret_split_by_invisible_format_characters_is_still_redacted(split: str) -> None:
    text = echoed_refresh_error(f"bad token {REFRESH[:9]}{split}{REFRESH[9:]}")
    assert_no_secret(text)
    assert "<secret " in text


@pytest.mark.parametrize("split", ["\u034f", "\ufe0f", "\u3164", "\u115f"])
def test_a_secret_split_by_invisible_non_format_characters_is_redacted(split: str) -> None:
    text = echoed_refresh_error(f"bad token {REFRESH[:9]}{split}{REFRESH[9:]}")
    assert_no_secret(text.replace(split, ""))


@pytest.mark.parametrize(
    "description",
    [
        f"bad token {REFRESH}",
        f"bad token {json.dumps(REFRESH)}",
        f"client {base64.b64encode(f'{CLIENT_ID}:{SECRET}'.encode()).decode()}",
        f"secret {SECRET.upper()}".replace(SECRET.upper(), SECRET),
    ],
)
def test_plain_and_basic_echoes_are_redacted(description: str) -> None:
    assert_no_secret(echoed_refresh_error(description))


def test_a_lower_case_percent_encoded_echo_is_redacted() -> None:
    secret = "rt-SECRET/r3fr3sh+0123456789=="
    body = {"error": "invalid_grant", "error_description": "got " + secret.replace("/", "%2f").replace("+", "%2b")}
    with serve({"/token": json_route(body, 400)}) as issuer:
        client = OAuthClient(CLIENT_ID)
        with pytest.raises(DeviceAuthError) as caught:
            client.refresh(issuer.url + "/token", secret)
    text = rendered(caught.value).lower()
    assert "r3fr3sh%2b0123456789" not in text


def test_a_base64_echo_of_the_refresh_token_is_redacted() -> None:
    text = echoed_refresh_error("token was " + base64.b64encode(REFRESH.encode()).decode())
    assert base64.b64encode(REFRESH.encode()).decode() not in text


def test_most_of_a_secret_echoed_is_redacted() -> None:
    text = echoed_refresh_error("token was ..." + REFRESH[6:])
    assert REFRESH[6:] not in text


def test_a_structured_description_holding_a_secret_with_a_backslash_is_redacted() -> None:
    secret = "cs-SECRET\\c1i3nt'0123456789\""
    body = {"error": "invalid_client", "error_description": {"echo": secret}}
    with serve({"/token": json_route(body, 401)}) as issuer:
        client = OAuthClient(CLIENT_ID, client_secret=secret, token_endpoint_auth_method="client_secret_post")
        with pytest.raises(DeviceAuthError) as caught:
            client.refresh(issuer.url + "/token", REFRESH)
    text = rendered(caught.value)
    assert "c1i3nt" not in text


def test_a_401_echoing_secrets_in_www_authenticate_and_body_stays_quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    header = {"WWW-Authenticate": f'Basic realm="{SECRET}", error_description="{REFRESH} {basic}"'}
    text = echoed_refresh_error(f"<html>{REFRESH}</html>", status=401, headers=header)
    assert_no_secret(text + caplog.text, SECRET, REFRESH, basic)
    with serve({"/token": lambda server, request, conn: answer(server, conn, 401, REFRESH, header)}) as issuer:
        client = OAuthClient(CLIENT_ID, client_secret=SECRET)
        with pytest.raises(ServerError) as caught:
            client.refresh(issuer.url + "/token", REFRESH)
    assert_no_secret(rendered(caught.value) + caplog.text, SECRET, REFRESH, basic)


def test_our_debug_logs_carry_no_secret_through_a_whole_hostile_login(
    caplog: pytest.LogCaptureFixture, cache_path: Path
) -> None:
    # Every answer echoes what it was sent, in the error text and elsewhere; the login still ends
    # with a token, and nothing deviceauth logs (at any level, exc_info included) holds a secret.
    caplog.set_level("DEBUG", logger="deviceauth")
    polls: list[int] = []
    routes: dict[str, Route] = {}

    def device(server: HostileServer, request: Request, conn: socket.socket) -> None:
        answer(
            server,
            conn,
            200,
            {
                "device_code": DEVICE_CODE,
                "user_code": "WDJB-MJHT",
                "verification_uri": "https://v.example/device",
                "expires_in": 60,
                "interval": 1,
            },
        )

    def token(server: HostileServer, request: Request, conn: socket.socket) -> None:
        polls.append(1)
        form = request.form()
        if len(polls) == 1:
            answer(server, conn, 400, {"error": "authorization_pending", "error_description": form["device_code"]})
        elif len(polls) == 2:
            answer(server, conn, 503, f"down {form['device_code']} {form.get('client_secret')}")
        elif len(polls) == 3:
            answer(server, conn, 400, {"error": "slow_down", "error_description": json.dumps(form)})
        else:
            answer(server, conn, 200, {"access_token": "at-SECRET-fresh", "token_type": "Bearer", "expires_in": 300})

    with serve(routes) as issuer:
        realm = issuer.url + "/realms/r"
        routes["/realms/r/.well-known/openid-configuration"] = json_route(
            {"issuer": realm, "token_endpoint": realm + "/token", "device_authorization_endpoint": realm + "/device"}
        )
        routes["/realms/r/device"] = device
        routes["/realms/r/token"] = token
        clock = FakeClock()
        shown: list[DeviceCode] = []
        auth = DeviceAuth(
            realm,
            CLIENT_ID,
            cache=cache_path,
            client_secret=SECRET,
            token_endpoint_auth_method="client_secret_post",
            interactive=True,
            prompt=shown.append,
            open_browser=False,
            clock=clock,
            sleep=clock.sleep,
        )
        assert auth.get_token() == "at-SECRET-fresh"
    logged = "\n".join(
        record.getMessage() + ("".join(traceback.format_exception(*record.exc_info)) if record.exc_info else "")
        for record in caplog.records
    )
    assert_no_secret(logged + caplog.text, SECRET, DEVICE_CODE, "at-SECRET-fresh")
    assert len(polls) == 4


# -- the caller's own prompt, and what it is given ----------------------------------------------------------


def test_a_prompt_that_prints_the_device_code_object_shows_no_device_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = DeviceCode.from_response(
        {"device_code": DEVICE_CODE, "user_code": "WDJB-MJHT", "verification_uri": "https://v.example/d"}, 0.0
    )
    print(code, f"{code}", f"{code!r}", str(code), format(code, ""))
    out = capsys.readouterr().out
    assert "WDJB-MJHT" in out
    assert DEVICE_CODE not in out


def test_a_raising_prompt_ends_the_login_and_releases_the_store(cache_path: Path) -> None:
    class PromptBroke(RuntimeError):
        pass

    def prompt(code: DeviceCode) -> None:
        raise PromptBroke("the caller's UI failed")

    routes: dict[str, Route] = {}
    with serve(routes) as issuer:
        realm = issuer.url + "/realms/r"
        routes["/realms/r/.well-known/openid-configuration"] = json_route(
            {"issuer": realm, "token_endpoint": realm + "/token", "device_authorization_endpoint": realm + "/device"}
        )
        routes["/realms/r/device"] = json_route(
            {"device_code": DEVICE_CODE, "user_code": "WDJB-MJHT", "verification_uri": "https://v.example/device"}
        )
        clock = FakeClock()
        auth = DeviceAuth(
            realm, CLIENT_ID, cache=cache_path, interactive=True, prompt=prompt, clock=clock, sleep=clock.sleep
        )
        with pytest.raises(PromptBroke):  # the caller's own error, unchanged: their bug, their traceback
            auth.get_token()
        assert not any(request.path.endswith("/token") for request in issuer.requests)  # no polling began
        # The lock and the login marker are gone: another identity object is told to log in at once.
        other = DeviceAuth(realm, CLIENT_ID, cache=cache_path, interactive=False, lock_timeout=2)
        with pytest.raises(LoginRequired):
            other.get_token()
    assert not list(cache_path.parent.glob("*login*"))


# -- redirects of API calls --------------------------------------------------------------------------------


@pytest.fixture
def netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "netrc"
    path.write_text(f"machine {EVIL} login someone password netrc-password\n")
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))


@pytest.mark.usefixtures("netrc", "no_proxy_settings")
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_requests_redirect_to_another_origin_never_carries_our_token(
    capture: HostileServer, cache_path: Path, status: int
) -> None:
    auth = cached_auth(cache_path)
    renewed: list[str | None] = []
    real_renew = auth.renew

    def renew(rejected: str | None = None) -> str:
        renewed.append(rejected)
        return real_renew(rejected)

    auth.renew = renew  # type: ignore[method-assign]
    location = {"Location": f"http://{EVIL}:{capture.port}/steal"}
    with serve({"/v1/items": json_route(b"", status, location)}) as api, requests.Session() as session:
        session.trust_env = True
        response = session.post(api.url + "/v1/items", data=b"payload", auth=auth, timeout=3)
    assert response.status_code == 200
    assert len(capture.requests) == 1
    sent = capture.requests[0].headers.get("authorization", "")
    assert "Bearer" not in sent  # requests may add the netrc credentials for that host: theirs, not ours
    assert renewed == []


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_httpx_redirect_to_another_origin_never_carries_our_token(
    capture: HostileServer, cache_path: Path, status: int
) -> None:
    auth = cached_auth(cache_path)
    location = {"Location": f"http://{EVIL}:{capture.port}/steal"}
    with (
        serve({"/v1/items": json_route(b"", status, location)}) as api,
        httpx.Client(auth=auth.httpx, follow_redirects=True, timeout=3, trust_env=False) as client,
    ):
        response = client.get(api.url + "/v1/items")
    assert response.status_code == 200
    assert "authorization" not in capture.requests[0].headers


def test_a_401_from_the_redirect_target_does_not_refresh(capture: HostileServer, cache_path: Path) -> None:
    auth = cached_auth(cache_path)
    renewed: list[str | None] = []

    def renew(rejected: str | None = None) -> str:
        renewed.append(rejected)
        return "x"

    auth.renew = renew  # type: ignore[method-assign]
    with HostileServer(lambda request, conn: answer(target, conn, 401, b"")) as target:
        location = {"Location": f"{target.url}/elsewhere".replace("127.0.0.1", "localhost")}
        with serve({"/v1/items": json_route(b"", 302, location)}) as api:
            assert requests.get(api.url + "/v1/items", auth=auth, timeout=3).status_code == 401
    assert renewed == []
    assert "authorization" not in target.requests[0].headers


# -- objects: pickles carry configuration, reprs carry nothing -----------------------------------------------


def test_a_pickle_keeps_the_client_secret_for_workers_but_no_repr_shows_it(cache_path: Path) -> None:
    auth = cached_auth(cache_path, client_secret=SECRET, offline_token=REFRESH)
    blob = pickle.dumps(auth)
    assert SECRET.encode() in blob  # a worker process must be able to authenticate
    clone = pickle.loads(blob)  # noqa: S301  (our own pickle)
    token = auth.cached_token()
    assert token is not None
    objects: list[object] = [
        auth,
        clone,
        auth.httpx,
        auth.httpx2,
        auth.pool_manager(),
        auth.store,
        auth.logout(revoke=False),
        token,
        auth.__getstate__(),  # what a pickle carries (the secret, deliberately), as a repr
    ]
    for thing in objects:
        assert_no_secret(repr(thing) + str(thing), SECRET, REFRESH, token.access_token, token.refresh_token or "")


# -- hostile files and environment for the CLI -------------------------------------------------------------


@pytest.fixture
def special_files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    directory = tmp_path / "dir"
    directory.mkdir()
    return {"fifo": fifo, "zero": Path("/dev/zero"), "dir": directory, "loop": loop, "tty": Path("/dev/tty")}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "zero", "dir", "loop", "tty"])
@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["token", "--issuer", ISSUER, "--client-id", CLIENT_ID],
        ["logout", "--no-revoke", "--issuer", ISSUER, "--client-id", CLIENT_ID],
        ["login", "--issuer", ISSUER, "--client-id", CLIENT_ID, "--no-browser"],
    ],
)
def test_cli_with_deviceauth_cache_at_a_special_file_fails_quietly(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    special_files: dict[str, Path],
    kind: str,
    command: list[str],
) -> None:
    monkeypatch.setenv("DEVICEAUTH_CACHE", str(special_files[kind]))
    done: list[int] = []
    # Run in a daemon thread so a read that blocks (a FIFO with no writer) fails the test instead of hanging.
    worker = threading.Thread(target=lambda: done.append(main(command)), daemon=True)
    worker.start()
    worker.join(20)
    assert done, "the CLI blocked on a special file"
    out, err = capsys.readouterr()
    assert done[0] != 0
    assert "Traceback" not in out + err
    assert err.startswith("deviceauth: ")


def test_one_huge_identity_does_not_cost_the_others(cache_path: Path) -> None:
    clock = FakeClock()
    good = make_token(clock.now, lifetime=3600)
    write_cache(cache_path, {(ISSUER, CLIENT_ID, None): good})
    data = json.loads(cache_path.read_text())
    # A planted entry of 6 MB: under the file's size cap, far over any token's.
    entry = data["identities"][f"{ISSUER} {CLIENT_ID}"]
    huge = {**entry["token"], "access_token": "a" * (6 << 20)}
    data["identities"][f"{ISSUER} other-client"] = {**entry, "client_id": "other-client", "token": huge}
    cache_path.write_text(json.dumps(data))
    auth = DeviceAuth(ISSUER, CLIENT_ID, cache=cache_path, interactive=False, clock=clock, sleep=clock.sleep)
    assert auth.get_token() == good.access_token
    other = DeviceAuth(ISSUER, "other-client", cache=cache_path, interactive=False, clock=clock, sleep=clock.sleep)
    with pytest.raises(DeviceAuthError):
        other.get_token()


# -- a disk that fails at other points than the rename ----------------------------------------------------


ME = (ISSUER, CLIENT_ID, None)


def refreshes(server: FakeAuthServer) -> list[str]:
    return [form["refresh_token"] for form in server.token_requests if form.get("grant_type") == "refresh_token"]


@pytest.fixture
def _no_offline_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVICEAUTH_OFFLINE_TOKEN", raising=False)


class BrokenDisk:
    """Fails the cache write at ``where`` with ``code`` while ``broken`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, where: str, code: int) -> None:
        self.broken = True
        self.failures = 0
        target: Any = tempfile if where == "mkstemp" else os
        real = getattr(target, where)

        def failing(*args: Any, **kwargs: Any) -> Any:
            if self.broken:
                self.failures += 1
                raise OSError(code, os.strerror(code))
            return real(*args, **kwargs)

        monkeypatch.setattr(target, where, failing)


@pytest.mark.usefixtures("_no_offline_token")
@pytest.mark.parametrize(
    ("where", "code"),
    [("fsync", errno.ENOSPC), ("mkstemp", errno.EDQUOT), ("fsync", errno.EIO), ("mkstemp", errno.EROFS)],
)
def test_a_refresh_whose_write_fails_anywhere_keeps_the_session(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, code: int
) -> None:
    original = make_token(clock(), obtained_ago=1000)
    write_cache(cache_path, {ME: original}, server_metadata=metadata())
    engine = make_engine(cache_path, clock)
    disk = BrokenDisk(monkeypatch, where, code)
    first = server.grant(expires_in=300)
    assert engine.access_token(NON_INTERACTIVE) == first["access_token"]
    assert disk.failures >= 1
    clock.advance(1000)
    second = server.grant(expires_in=300)
    assert engine.access_token(NON_INTERACTIVE) == second["access_token"]
    assert refreshes(server) == [original.refresh_token, first["refresh_token"]]  # never the consumed one again
    disk.broken = False
    clock.advance(1000)
    server.grant(expires_in=300)
    engine.access_token(NON_INTERACTIVE)
    assert refreshes(server)[-1] == second["refresh_token"]
    assert list(cache_path.parent.glob("*.tmp")) == []  # no temp file left behind by the failures


@pytest.mark.usefixtures("_no_offline_token")
def test_a_second_object_for_the_same_identity_never_resends_a_consumed_refresh_token(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = make_token(clock(), obtained_ago=1000)
    write_cache(cache_path, {ME: original}, server_metadata=metadata())
    BrokenDisk(monkeypatch, "fsync", errno.ENOSPC)
    server.grant(expires_in=300)
    make_engine(cache_path, clock).access_token(NON_INTERACTIVE)
    clock.advance(1000)
    server.grant(expires_in=300)
    make_engine(cache_path, clock, leeway=30).access_token(NON_INTERACTIVE)  # same identity, same process
    assert refreshes(server).count(str(original.refresh_token)) == 1


@pytest.mark.usefixtures("_no_offline_token")
@pytest.mark.xfail(
    strict=True,
    reason="VULN (residual, cross-process): after a refresh whose write failed, another process reads the "
    "consumed refresh token from the store and sends it again; a server with reuse detection revokes the session",
)
def test_another_process_never_resends_a_refresh_token_consumed_while_the_disk_was_full(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = make_token(clock(), obtained_ago=1000)
    write_cache(cache_path, {ME: original}, server_metadata=metadata())
    BrokenDisk(monkeypatch, "fsync", errno.ENOSPC)
    server.grant(expires_in=300)
    make_engine(cache_path, clock).access_token(NON_INTERACTIVE)
    _process.clear()  # what a new worker process starts with: nothing in memory
    server.grant(expires_in=300)
    with contextlib.suppress(DeviceAuthError):
        make_engine(cache_path, clock).access_token(NON_INTERACTIVE)
    assert refreshes(server).count(str(original.refresh_token)) == 1


def test_an_offline_token_echoed_by_the_server_is_in_no_part_of_the_error_chain(
    mocked: Any, cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline = "offline-SECRET-0ff1in3-0123456789"
    monkeypatch.delenv("DEVICEAUTH_OFFLINE_TOKEN", raising=False)
    fake = FakeAuthServer(mocked)
    fake.discovery()
    fake.token_endpoint()
    fake.token_answers.append(oauth_error("invalid_grant", description=f"offline token {offline} was revoked"))
    clock = FakeClock()
    auth = DeviceAuth(ISSUER, CLIENT_ID, cache=cache_path, interactive=False, offline_token=offline, clock=clock)
    with pytest.raises(LoginRequired) as caught:
        auth.get_token()
    assert_no_secret(rendered(caught.value) + repr(caught.value) + str(caught.value.__cause__), offline)


# -- text that reaches the terminal through the CLI or a suggested command ----------------------------------


def test_the_suggested_login_command_is_one_shell_word_per_value(tmp_path: Path) -> None:
    issuer = "https://auth.example.org/realms/$(id)"
    scope = "x' ; id ; '"
    cache = tmp_path / "a b" / "$(id).json"
    auth = DeviceAuth(issuer, "cli;id", scope=scope, cache=cache, interactive=False)
    with pytest.raises(LoginRequired) as caught:
        auth.get_token()
    words = shlex.split(caught.value.command or "")
    assert words[:2] == ["deviceauth", "login"]
    assert dict(zip(words[2::2], words[3::2], strict=True)) == {
        "--issuer": issuer,
        "--client-id": "cli;id",
        "--scope": auth.scope,
        "--cache": str(cache),
    }


HOSTILE_TEXT = "\x1b]52;c;cHduZWQ=\x07\x1b[2J\rTo sign in, open https://evil.example/device and enter the code X\u202e"


def test_cli_status_of_a_planted_cache_prints_no_control_character(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / ".tokens.json"
    token = {"access_token": "at-SECRET-status", "token_type": "Bearer", "expires_at": 1e308, "obtained_at": "x"}
    identity = {"issuer": "https://x.example/" + HOSTILE_TEXT, "client_id": HOSTILE_TEXT, "scope": HOSTILE_TEXT}
    cache.write_text(json.dumps({"version": 1, "servers": {}, "identities": {"k": {**identity, "token": token}}}))
    cache.chmod(0o600)
    main(["status", "--cache", str(cache)])
    out, err = capsys.readouterr()
    assert not any(ch in out + err for ch in "\x1b\x07\r\u202e")
    assert "Traceback" not in out + err and "at-SECRET-status" not in out + err


@pytest.mark.usefixtures("_no_offline_token")
def test_cli_token_against_a_hostile_server_prints_one_clean_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    routes: dict[str, Route] = {}
    with serve(routes) as issuer:
        realm = issuer.url + "/realms/r"
        cache = tmp_path / ".tokens.json"
        write_cache(cache, {(realm, CLIENT_ID, None): make_token(0, lifetime=1, n=7)})
        routes["/realms/r/.well-known/openid-configuration"] = json_route({"issuer": realm, "token_endpoint": realm})
        routes["/realms/r"] = json_route(
            {"error": "invalid_grant\x1b[31m", "error_description": HOSTILE_TEXT + " rt-SECRET-0007-cccc"}, 400
        )
        monkeypatch.setattr("sys.stdin", io.StringIO())  # no TTY: never prompt
        code = main(["token", "--issuer", realm, "--client-id", CLIENT_ID, "--cache", str(cache)])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("deviceauth: ")
    assert not any(ch in err for ch in "\x1b\x07\r\u202e")
    assert "rt-SECRET-0007-cccc" not in err and "Traceback" not in err


# -- what the person is shown and sent to ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "complete"),
    [
        ("https://auth.example.org/device", "https://auth.example.org@evil.example/device?user_code=WDJB-MJHT"),
        ("https://auth.example.org/device", "https://evil.example/device?user_code=WDJB-MJHT"),
        ("https://auth.example.org/device", "http://auth.example.org/device?user_code=WDJB-MJHT"),
        ("https://auth.example.org/device", "https://auth.example.org/device?user_code=OTHER-CODE"),
        ("https://auth.example.org/device", "javascript:alert('WDJB-MJHT')"),
        ("https://auth.example.org/device", ["https://auth.example.org/device?user_code=WDJB-MJHT"]),
    ],
)
def test_a_complete_link_to_elsewhere_is_never_offered(uri: str, complete: Any) -> None:
    body = {"device_code": DEVICE_CODE, "user_code": "WDJB-MJHT", "verification_uri": uri}
    code = DeviceCode.from_response({**body, "verification_uri_complete": complete}, 0.0)
    assert code.verification_uri_complete is None
    assert code.url == uri


@pytest.mark.parametrize(
    "uri",
    [
        "https://auth.example.org@evil.example/device",
        "https://аuth.example.org/device",  # Cyrillic a
        "https://auth.example.org\\@evil.example/device",
        "https:auth.example.org/device",
        "https:///evil.example/device",
        "file:///etc/passwd",
        "https://auth.example.org/device\x1b]8;;https://evil.example\x07",
    ],
)
def test_a_verification_uri_that_hides_where_it_goes_is_refused(uri: str) -> None:
    body = {"device_code": DEVICE_CODE, "user_code": "WDJB-MJHT", "verification_uri": uri}
    with pytest.raises(ServerError) as caught:
        DeviceCode.from_response(body, 0.0)
    assert "evil" not in str(caught.value) and DEVICE_CODE not in rendered(caught.value)


@pytest.mark.parametrize("cut", ["/", "?", "#"])
def test_a_refused_url_never_shows_any_part_of_its_password(cut: str) -> None:
    url = f"https://alice:hun{cut}ter2@api.example.org/items"
    with pytest.raises(InsecureTransport) as caught:
        check_outbound(url)
    assert "hun" not in rendered(caught.value)


# -- broken HTTP at the framing level (not the body) ------------------------------------------------------------


RAW_ANSWERS = {
    "no status line (HTTP/0.9)": b'{"access_token": "x"}',
    "ICY status line": b"ICY 200 OK\r\n\r\n{}",
    "huge status code": b"HTTP/1.1 99999999999999999999 OK\r\nContent-Length: 2\r\n\r\n{}",
    "negative length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}",
    "two lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 900\r\n\r\n{}",
    "chunk size 2**64": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n{}",
    "chunk size not hex": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "too many headers": b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200 + b"\r\n{}",
    "one huge header": b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 300_000 + b"\r\n\r\n{}",
    "bare LF and NUL": b"HTTP/1.1 200 OK\nContent-Length: 2\n\x00\n\n{}",
    "redirect without Location": b"HTTP/1.1 307 Temporary\r\nContent-Length: 0\r\n\r\n",
    "1xx forever": b"HTTP/1.1 100 Continue\r\n\r\n" * 2000,
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(RAW_ANSWERS))
def test_broken_http_framing_is_a_typed_error_without_secrets(name: str) -> None:
    raw = RAW_ANSWERS[name]
    server: HostileServer = HostileServer(lambda request, conn: server.send(conn, raw))
    with server:
        client = OAuthClient(
            CLIENT_ID, client_secret=SECRET, token_endpoint_auth_method="client_secret_post", timeout=5
        )
        exchanges: list[Callable[[], Any]] = [
            lambda: client.refresh(server.url + "/token", REFRESH),
            lambda: client.poll(server.url + "/token", DEVICE_CODE),
            lambda: client.request_device_code(server.url + "/device", "openid"),
            lambda: client.discover(server.url + "/realms/r"),
        ]
        for exchange in exchanges:
            try:
                exchange()
            except DeviceAuthError as exc:
                assert_no_secret(rendered(exc))
            # A server answering nonsense that still parses as a token is fine: the type check is the point.


@pytest.mark.timeout(60)
def test_headers_trickled_for_ever_end_at_the_exchange_deadline() -> None:
    stop = threading.Event()

    def trickle(request: Request, conn: socket.socket) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\n")
        for _ in range(600):  # bounded: at most 60 s of one header byte every 0.1 s
            if stop.wait(0.1):
                return
            server.send(conn, b"X")

    server: HostileServer = HostileServer(trickle)
    with server:
        client = OAuthClient(CLIENT_ID, timeout=1.5)
        with pytest.raises(ServerError) as caught:
            client.refresh(server.url + "/token", REFRESH)
        stop.set()
    assert caught.value.transient
    assert_no_secret(rendered(caught.value))


# -- what an exception keeps, beyond what a traceback prints -------------------------------------------------


def whole_chain(error: BaseException | None) -> list[BaseException]:
    """Every exception reachable by ``__cause__`` and ``__context__``, suppressed or not (as debuggers,
    error trackers that ignore ``__suppress_context__``, and pickles of the error see them)."""
    found: list[BaseException] = []
    pending = [error]
    while pending and len(found) < 50:
        current = pending.pop()
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        pending += [current.__cause__, current.__context__]
    return found


@pytest.mark.parametrize("error", ["invalid_grant", "invalid_client", "slow_down", "server_error"])
def test_no_exception_in_the_whole_chain_holds_an_echoed_secret(error: str) -> None:
    body = {"error": error, "error_description": f"echo {REFRESH}"}
    with serve({"/token": json_route(body, 400)}) as issuer, pytest.raises(DeviceAuthError) as caught:
        OAuthClient(CLIENT_ID, timeout=3).refresh(issuer.url + "/token", REFRESH)
    for link in whole_chain(caught.value):
        assert_no_secret(str(link) + repr(link) + repr(getattr(link, "__dict__", {})), REFRESH)


# -- a token store over the network ------------------------------------------------------------------------------


@pytest.mark.usefixtures("_no_offline_token")
def test_a_plain_redis_store_on_a_remote_host_is_refused(capture: HostileServer) -> None:
    def use() -> None:  # refused at construction (ValueError) or at first use (DeviceAuthError): either is fine
        DeviceAuth(ISSUER, CLIENT_ID, cache=f"redis://{EVIL}:{capture.port}/0", interactive=False).get_token()

    with pytest.raises((ValueError, TypeError, DeviceAuthError)):
        use()
    assert capture.received == 0
