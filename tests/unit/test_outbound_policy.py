"""The outbound policy: one check for every URL the library sends to, OAuth calls and API calls alike.

Made-up remote names (``auth.evil.example``) resolve to a loopback capture server, so a test can
prove that nothing at all was sent there: the capture server counts every byte it receives.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from deviceauth_fakes import CLIENT_ID, ISSUER, make_token, write_cache
from hostile_http import HostileServer, answer, capture_server, resolve

from deviceauth import DeviceAuth, DeviceAuthError, DiscoveryError, InsecureTransport
from deviceauth._discovery import discover
from deviceauth._oauth import OAuthClient
from deviceauth._transport import check_outbound, check_transport
from deviceauth.urllib3 import _origin

EVIL = "auth.evil.example"


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    """A server that records whatever reaches it, reachable as auth.evil.example:80 and :443."""
    with capture_server() as server, resolve(monkeypatch, {EVIL: server.port, "evil": server.port}):
        yield server


def nothing_sent(server: HostileServer) -> None:
    assert (server.connections, server.received) == (0, 0)


# -- the rule itself -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/",
        "http://auth.evil.example/token",
        "HTTP://example.org/",
        "http://10.0.0.1/",
        "http://0.0.0.0/",
        "http://localhost.example.org/",
        "http://app.localhost:3000/",  # resolved through DNS like any name: not trusted as loopback
        "http://127.0.0.1.evil.example/",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "data:text/plain,hi",
        "https:/example.org/",
        "//example.org/",
        "example.org/token",
        "",
        # parsers disagree on these (urllib3 sends to "evil", urllib.parse sees 127.0.0.1)
        "http://evil\\@127.0.0.1/x",
        "http://evil:80\\@127.0.0.1:8080/x",
        "http://evil:P\\@127.0.0.1:A/x",
        "https://good.example\\@evil.example/",
        # userinfo, whitespace, controls, escapes, non-ASCII hosts
        "https://user:pass@example.org/",
        "http://user@127.0.0.1/",
        "https://exa mple.org/",
        "https://example.org/ path",
        "https://example.org\t/",
        "https://example.org/\r\nX-Injected: 1",
        "https://example.org\x00.evil/",
        "https://ex%61mple.org/",
        "https://exämple.org/",
        "https://evil.example／.good.example/",
        "https://:443/",
        "https:///path",
        "https://example.org:0/",
        "https://example.org:99999/",
        "https://example.org:-1/",
        "https://example.org:https/",
        "https://[::1/",
    ],
)
def test_refused(url: str) -> None:
    with pytest.raises(InsecureTransport) as caught:
        check_outbound(url)
    assert isinstance(caught.value, DeviceAuthError)
    assert "\r" not in str(caught.value) and "\x00" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["https://user:hunter2@example.org/", "http://user:hunter2@127.0.0.1/", "https://a:hunter2@"]
)
def test_userinfo_is_never_shown(url: str) -> None:
    with pytest.raises(InsecureTransport) as caught:
        check_outbound(url)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("value", [None, 42, b"https://example.org/", ["https://example.org/"]])
def test_non_strings_are_refused(value: Any) -> None:
    with pytest.raises(InsecureTransport):
        check_outbound(value)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://example.org/", "https://example.org:443"),
        ("HTTPS://Example.ORG:8443/a?b#c", "https://example.org:8443"),
        ("https://example.org?x=1", "https://example.org:443"),
        ("https://example.org#frag@evil.example", "https://example.org:443"),
        ("https://example.org/@evil.example", "https://example.org:443"),
        ("http://127.0.0.2:8080/x", "http://127.0.0.2:8080"),
        ("http://localhost/", "http://localhost:80"),
        ("http://[::1]:9000/", "http://::1:9000"),
        ("https://[2001:db8::1]/", "https://2001:db8::1:443"),
    ],
)
def test_allowed_with_their_origin(url: str, origin: str) -> None:
    assert check_outbound(url) == origin


@pytest.mark.parametrize("url", ["https://example.org/x", "http://127.0.0.1:8080/x", "http://evil.example/x"])
def test_check_transport_is_the_same_rule_plus_no_environment_proxy(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    try:
        expected: str | None = check_outbound(url)
    except InsecureTransport:
        expected = None
    try:
        assert check_transport(url) == expected
    except InsecureTransport:
        assert expected is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    if expected is not None and expected.startswith("http:"):
        with pytest.raises(InsecureTransport, match="NO_PROXY"):
            check_transport(url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert check_transport(url) == expected


def test_urllib3_origin_is_read_the_way_urllib3_reads_it() -> None:
    # urllib.parse reads 127.0.0.1 here; urllib3 (which sends the request) connects to "evil".
    assert _origin("http://evil:80\\@127.0.0.1:8080/x") == "http://evil:80"
    assert _origin("https://API.example.org/x") == "https://api.example.org:443"


# -- API calls through every adapter ------------------------------------------------------------------


@pytest.fixture
def auth(cache_path: Path) -> DeviceAuth:
    """An identity with a valid cached token: an API call needs no OAuth traffic at all."""
    import time

    write_cache(cache_path, {(ISSUER, CLIENT_ID, None): make_token(time.time(), lifetime=3600)})
    return DeviceAuth(ISSUER, CLIENT_ID, cache=cache_path, interactive=False)


DIFFERENTIAL = "http://evil:80\\@127.0.0.1:8080/x"


@pytest.mark.parametrize("url", [f"http://{EVIL}/items", DIFFERENTIAL])
def test_urllib3_adapter_sends_nothing(auth: DeviceAuth, capture: HostileServer, url: str) -> None:
    http = auth.pool_manager(retries=False)
    with pytest.raises(InsecureTransport):
        http.request("GET", url)
    nothing_sent(capture)


def test_urllib3_adapter_differential_past_an_origin_allow_list(auth: DeviceAuth, capture: HostileServer) -> None:
    # origins= names loopback; urllib3 reads the differential URL as host "evil", so the request
    # that does go there (the caller asked for it) carries no token.
    http = auth.pool_manager(origins=["http://127.0.0.1:8080"], retries=False)
    assert http.request("GET", DIFFERENTIAL, timeout=5).status == 200
    assert len(capture.requests) == 1
    assert "authorization" not in capture.requests[0].headers


def test_requests_adapter_sends_nothing(auth: DeviceAuth, capture: HostileServer) -> None:
    with pytest.raises(InsecureTransport):
        requests.get(f"http://{EVIL}/items", auth=auth, timeout=2)
    nothing_sent(capture)


def test_httpx_adapter_sends_nothing(auth: DeviceAuth, capture: HostileServer) -> None:
    with httpx.Client(auth=auth.httpx) as client, pytest.raises(InsecureTransport):
        client.get(f"http://{EVIL}/items")
    nothing_sent(capture)


# -- OAuth traffic ----------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", [f"http://{EVIL}/token", "javascript:alert(1)", "file:///etc/passwd"])
def test_every_oauth_exchange_refuses_before_sending(capture: HostileServer, endpoint: str) -> None:
    client = OAuthClient(CLIENT_ID, client_secret="cs-SECRET", token_endpoint_auth_method="client_secret_post")
    calls = [
        lambda: client.get(endpoint),
        lambda: client.request_device_code(endpoint, "openid"),
        lambda: client.poll(endpoint, "devcode-SECRET"),
        lambda: client.refresh(endpoint, "rt-SECRET"),
        lambda: client.revoke(endpoint, "rt-SECRET", "refresh_token"),
    ]
    for call in calls:
        with pytest.raises(InsecureTransport):
            call()
    nothing_sent(capture)


def test_plain_http_remote_issuer_is_never_contacted(capture: HostileServer) -> None:
    client = OAuthClient(CLIENT_ID)
    with pytest.raises(InsecureTransport):
        discover(client.get, f"http://{EVIL}/realms/rrap")
    nothing_sent(capture)


@pytest.mark.parametrize("name", ["token_endpoint", "device_authorization_endpoint", "revocation_endpoint"])
@pytest.mark.parametrize("bad", [f"http://{EVIL}/x", "javascript:alert(document.cookie)", "file:///etc/passwd", 7])
def test_discovered_endpoints_pass_the_same_check(capture: HostileServer, name: str, bad: Any) -> None:
    issuer_path = "/realms/rrap"
    metadata: dict[str, Any] = {}
    with HostileServer(lambda request, conn: answer(server, conn, 200, metadata)) as server:
        issuer = server.url + issuer_path
        metadata.update(
            issuer=issuer, token_endpoint=f"{issuer}/token", device_authorization_endpoint=f"{issuer}/device"
        )
        metadata[name] = bad
        with pytest.raises(DiscoveryError) as caught:
            discover(OAuthClient(CLIENT_ID).get, issuer)
    assert name in str(caught.value)
    assert "document.cookie" not in str(caught.value)
    nothing_sent(capture)


def test_endpoints_given_as_arguments_are_checked_at_use(
    capture: HostileServer, cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.delenv("DEVICEAUTH_OFFLINE_TOKEN", raising=False)
    expired = make_token(time.time(), lifetime=60, obtained_ago=600)
    write_cache(cache_path, {(ISSUER, CLIENT_ID, None): expired})
    with pytest.raises((InsecureTransport, ValueError)):  # refused at construction or at use, never sent
        DeviceAuth(
            ISSUER,
            CLIENT_ID,
            cache=cache_path,
            interactive=False,
            token_endpoint=f"http://{EVIL}/token",
            device_authorization_endpoint=f"http://{EVIL}/device",
        ).get_token()
    nothing_sent(capture)


def test_endpoints_from_a_tampered_cache_are_checked_at_use(
    capture: HostileServer, cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.delenv("DEVICEAUTH_OFFLINE_TOKEN", raising=False)
    expired = make_token(time.time(), lifetime=60, obtained_ago=600)
    tampered = {"issuer": ISSUER, "token_endpoint": f"http://{EVIL}/token", "device_authorization_endpoint": "x"}
    write_cache(cache_path, {(ISSUER, CLIENT_ID, None): expired}, server_metadata=tampered)
    with pytest.raises(DeviceAuthError):
        DeviceAuth(ISSUER, CLIENT_ID, cache=cache_path, interactive=False).get_token()
    nothing_sent(capture)


def test_the_refresh_token_never_reaches_a_plain_http_issuer(capture: HostileServer, cache_path: Path) -> None:
    import time

    issuer = f"http://{EVIL}/realms/rrap"
    expired = make_token(time.time(), lifetime=60, obtained_ago=600)
    write_cache(cache_path, {(issuer, CLIENT_ID, None): expired})
    with pytest.raises((DeviceAuthError, ValueError)):
        DeviceAuth(issuer, CLIENT_ID, cache=cache_path, interactive=True, prompt=lambda code: None).get_token()
    nothing_sent(capture)


@pytest.mark.parametrize("tail", ["/a b", "/a\tb", "/a\\b", "/a\r\nX: 1", "/\x00", "/\x7f"])
def test_a_known_origin_does_not_excuse_the_rest_of_the_url(tail: str) -> None:
    assert check_outbound("https://api.example.org/ok") == "https://api.example.org:443"  # now a known prefix
    with pytest.raises(InsecureTransport):
        check_outbound("https://api.example.org" + tail)
