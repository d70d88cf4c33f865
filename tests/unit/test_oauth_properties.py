"""Property tests: whatever a server answers, the OAuthClient returns a checked dict or a DeviceAuthError.

Hypothesis generates token, device-authorization and discovery answers (random JSON of any type
and size, numbers such as 1e400 and 10**400, error texts echoing our secrets, any status) and
sends them through the real ``OAuthClient`` over ``responses``. Every outcome is checked: the
result's fields have the types the engine relies on, an error is a ``DeviceAuthError`` without a
secret in its text or traceback, and each example finishes within hypothesis' deadline. A last
property checks the outbound policy against both URL parsers.
"""

from __future__ import annotations

import base64
import math
import re
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from deviceauth import DeviceAuthError, InsecureTransport
from deviceauth._discovery import ENDPOINTS
from deviceauth._oauth import AuthorizationPending, OAuthClient
from deviceauth._token import Token
from deviceauth._transport import _check, check_outbound

CLIENT_ID = "client-tools"
SECRET = "cs-SECRET-pr0p"
REFRESH = "rt-SECRET-pr0p"
DEVICE_CODE = "devcode-SECRET-pr0p"
BASIC = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
ISSUER = "https://as.example.org/realm"
ENDPOINT = f"{ISSUER}/token"

EXAMPLES = settings(
    max_examples=60,
    deadline=timedelta(seconds=5),  # the time bound: a slow example fails the test
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Raw:
    """A JSON literal Python's json module would not write: 1e400, NaN, a 400-digit number."""

    text: str


def encode(value: Any) -> str:
    import json

    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(encode(v) for v in value) + "]"
    return json.dumps(value)


odd_numbers = st.sampled_from(
    [Raw("1e400"), Raw("-1e400"), Raw("1" + "0" * 400), Raw("NaN"), Raw("Infinity"), Raw("-0"), Raw("1e-400")]
)
numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just(10**400),
    odd_numbers,
)
echoes = st.sampled_from(
    [
        REFRESH,
        f"the token {REFRESH} is not active",
        f"device code {DEVICE_CODE} unknown",
        f"client_secret={SECRET}",
        quote(REFRESH, safe=""),
        f"Authorization: Basic {BASIC}",
        "\x1b]8;;https://evil.example\x07click\x1b]8;;\x07\r\nTo sign in, open https://evil.example",
        "x" * 5000,
    ]
)
texts = st.one_of(st.text(max_size=40), echoes)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value most of the time, anything at all otherwise."""
    return st.one_of(value, value, json_values)


token_answers = st.fixed_dictionaries(
    {},
    optional={
        "access_token": maybe(st.text(min_size=1, max_size=40)),
        "token_type": maybe(st.sampled_from(["Bearer", "bearer", "DPoP"])),
        "expires_in": maybe(numbers),
        "refresh_expires_in": maybe(numbers),
        "refresh_token": maybe(st.text(min_size=1, max_size=40)),
        "id_token": maybe(st.text(max_size=40)),
        "scope": maybe(st.text(max_size=20)),
        "expires_at": json_values,
        "error": maybe(st.sampled_from(["invalid_grant", "slow_down", "authorization_pending", "access_denied"])),
        "error_description": maybe(texts),
    },
)
device_answers = st.fixed_dictionaries(
    {},
    optional={
        "device_code": maybe(st.text(min_size=1, max_size=40)),
        "user_code": maybe(st.text(min_size=1, max_size=12)),
        "verification_uri": maybe(st.just("https://as.example.org/device")),
        "verification_uri_complete": json_values,
        "expires_in": maybe(numbers),
        "interval": maybe(numbers),
        "error": maybe(st.sampled_from(["invalid_client", "invalid_scope", "slow_down"])),
        "error_description": maybe(texts),
    },
)
bodies = st.one_of(json_values.map(encode), st.binary(max_size=64).map(lambda b: b.decode("latin-1")))
statuses = st.sampled_from([200, 200, 200, 201, 400, 401, 403, 429, 500, 502, 503])
methods = st.sampled_from(["client_secret_post", "client_secret_basic"])


def answered(status: int, body: str, send: Any) -> Any:
    """Serve one answer on every URL, run ``send``; the outcome, or the DeviceAuthError it raised."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in (responses.GET, responses.POST):
            mock.add(method, re.compile(r"https://as\.example\.org/.*"), body=body, status=status)
        try:
            return send()
        except (DeviceAuthError, AuthorizationPending) as exc:
            return exc


def no_secret_in(error: BaseException, sent: tuple[str, ...] = ()) -> None:
    """No secret this client sent (the client's own, and ``sent``) in any rendering of ``error``."""
    text = "".join(traceback.format_exception(error)) + repr(error) + str(getattr(error, "error", ""))
    assert [secret for secret in (SECRET, BASIC, *sent) if secret in text] == []
    assert "\x1b" not in str(error) and "\r" not in str(error) and "\n" not in str(error)
    assert len(str(error)) < 1000


def check_token(result: Any, sent: str) -> None:
    if isinstance(result, BaseException):
        no_secret_in(result, (sent,))
        return
    assert isinstance(result, dict)
    assert isinstance(result["access_token"], str) and result["access_token"]
    for name in ("refresh_token", "id_token", "token_type", "scope"):
        assert name not in result or isinstance(result[name], str)
    for name in ("expires_in", "refresh_expires_in"):
        assert name not in result or (isinstance(result[name], float) and math.isfinite(result[name]))
    # What the engine does next: a token, or a ValueError naming the field (never its value), which
    # the engine raises as a ServerError (tests/unit/test_engine.py, an answer without an access_token).
    try:
        Token.from_response(result, time.time())
    except ValueError as exc:
        no_secret_in(exc, (sent,))


def client(method: str) -> OAuthClient:
    return OAuthClient(CLIENT_ID, client_secret=SECRET, token_endpoint_auth_method=method, timeout=5)


@EXAMPLES
@given(status=statuses, answer=st.one_of(token_answers.map(encode), bodies), method=methods)
def test_refresh_outcomes(status: int, answer: str, method: str) -> None:
    result = answered(status, answer, lambda: client(method).refresh(ENDPOINT, REFRESH))
    assert not isinstance(result, AuthorizationPending)  # polling answers to a refresh are typed errors
    check_token(result, REFRESH)


@EXAMPLES
@given(status=statuses, answer=st.one_of(token_answers.map(encode), bodies), method=methods)
def test_poll_outcomes(status: int, answer: str, method: str) -> None:
    result = answered(status, answer, lambda: client(method).poll(ENDPOINT, DEVICE_CODE))
    if not isinstance(result, AuthorizationPending):
        check_token(result, DEVICE_CODE)


@EXAMPLES
@given(status=statuses, answer=st.one_of(device_answers.map(encode), bodies), method=methods)
def test_device_authorization_outcomes(status: int, answer: str, method: str) -> None:
    result = answered(status, answer, lambda: client(method).request_device_code(f"{ISSUER}/device", "openid"))
    if isinstance(result, BaseException):
        assert not isinstance(result, AuthorizationPending)
        no_secret_in(result)
        return
    for name in ("device_code", "user_code", "verification_uri"):
        assert isinstance(result[name], str) and result[name]
    assert "verification_uri_complete" not in result or isinstance(result["verification_uri_complete"], str)
    for name in ("expires_in", "interval"):
        assert name not in result or (isinstance(result[name], float) and math.isfinite(result[name]))


discovery_answers = st.fixed_dictionaries(
    {"issuer": maybe(st.just(ISSUER))},
    optional={
        name: maybe(
            st.sampled_from([f"{ISSUER}/x", "http://evil.example/x", "javascript:alert(1)", "http://127.0.0.1/x"])
        )
        for name in ENDPOINTS
    },
)


@EXAMPLES
@given(status=statuses, answer=st.one_of(discovery_answers.map(encode), bodies))
def test_discovery_outcomes(status: int, answer: str) -> None:
    result = answered(status, answer, lambda: client("client_secret_post").discover(ISSUER))
    if isinstance(result, BaseException):
        no_secret_in(result)
        return
    assert result["issuer"].rstrip("/") == ISSUER
    for name in ENDPOINTS:
        if name in result:
            check_outbound(result[name])  # usable as is: nothing unchecked gets cached


url_parts = st.sampled_from(
    ["http://", "https://", "https://api.example.org/", "http://127.0.0.1/", "HTTP://", "ftp://", "javascript:",
     "", "//", "127.0.0.1", "localhost", "evil.example",
     "@", ":", "\\", "/", "?", "#", "[", "]", "::1", "%2e", ".", "80", " ", "\t", "\x00", "é", "／", "user:pw"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(url_parts, min_size=1, max_size=8).map("".join))
def test_an_allowed_url_is_read_the_same_way_by_both_parsers(url: str) -> None:
    outcomes = []
    for check in (check_outbound, check_outbound, _check):  # the second call may take the fast path
        try:
            outcomes.append(check(url))
        except InsecureTransport as exc:
            outcomes.append(None)
            refused = str(exc)
            assert "\x00" not in refused and "\t" not in refused
    assert len(set(outcomes)) == 1  # fast path, slow path: one verdict
    origin = outcomes[0]
    if origin is None:
        return
    scheme, _, host_port = origin.partition("://")
    host, _, port = host_port.rpartition(":")
    split, parsed = urlsplit(url), parse_url(url)
    assert (split.hostname or "").lower() == host == (parsed.host or "").strip("[]").lower()
    assert (split.port or {"http": 80, "https": 443}[scheme]) == int(port)
    assert (parsed.port or {"http": 80, "https": 443}[scheme]) == int(port)
    if scheme == "http":
        assert host in ("127.0.0.1", "localhost", "::1")
