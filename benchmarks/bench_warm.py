"""Warm per-request cost of the auth step: deviceauth vs a static header, and peers on the same footing.

Run: .venv/bin/python benchmarks/bench_warm.py [--quick]

Every row times one operation with a fresh token already in memory ("warm"), and the static-header
baseline for the same operation in the same run, interleaved batch by batch (A B, B A, A B, ...),
so drift in CPU speed hits both alike. The rows are a table (``CASES``): each names its library,
the operation, how to build it from the shared objects (``Fixture``) and its baseline. Reports,
never gates.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import _common
import requests
from _common import Loop, calls

# Audit events that mean the process touched the file system (os.open and open() raise "open").
FILE_EVENTS = frozenset(
    {
        "open",
        "os.listdir",
        "os.scandir",
        "os.mkdir",
        "os.remove",
        "os.rename",
        "os.replace",
        "os.truncate",
        "os.utime",
        "os.chmod",
        "fcntl.flock",
        "fcntl.lockf",
        "fcntl.fcntl",
        "shutil.copyfile",
        "tempfile.mkstemp",
    }
)
_file_events = [0]


def _audit(event: str, args: Any) -> None:
    if event in FILE_EVENTS:
        _file_events[0] += 1


class _StatCounter:
    """os.stat/os.lstat have no audit event: count them by wrapping (probe pass only, never timed)."""

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> _StatCounter:
        self._stat, self._lstat = os.stat, os.lstat

        def stat(*a: Any, **k: Any) -> Any:
            self.count += 1
            return self._stat(*a, **k)

        def lstat(*a: Any, **k: Any) -> Any:
            self.count += 1
            return self._lstat(*a, **k)

        os.stat, os.lstat = stat, lstat  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        os.stat, os.lstat = self._stat, self._lstat  # type: ignore[assignment]


# -- operations (each a loop body; the same helper drives deviceauth, the peers and the baselines) ----


def prepare(session: Any, auth: Any, url: str) -> None:
    session.prepare_request(requests.Request("GET", url, auth=auth))


def prepare_static(session: Any, headers: dict[str, str], url: str) -> None:
    session.prepare_request(requests.Request("GET", url, headers=headers))


def prepare_bare(session: Any, url: str) -> None:
    session.prepare_request(requests.Request("GET", url))


def flow_step(flow: Any, request: Any) -> None:
    """What a client does per request with a warm auth: start the flow, take the signed request, stop."""
    gen = flow.sync_auth_flow(request)
    next(gen)
    gen.close()


def build_and_flow(client: Any, flow: Any, url: str) -> None:
    flow_step(flow, client.build_request("GET", url))


def get_closed(get: Callable[[str], Any], url: str) -> None:
    get(url).close()


# -- the shared objects ------------------------------------------------------------------------------


class Fixture(SimpleNamespace):
    """Everything the rows use, built once: deviceauth's adapters, the peers, clients and baselines."""


def build_fixture(server: Any, auth: Any, token: str) -> Fixture:
    import urllib3

    f = Fixture(auth=auth, token=token, static=f"Bearer {token}", url="https://api.example.org/items")
    f.headers = {"Authorization": f.static}  # the baseline: a static header with the same token string
    f.api = server.api_url("me")  # real loopback HTTP (node test server): end-to-end rows
    f.token_endpoint = f"{server.issuer}/protocol/openid-connect/token"
    f.holder = SimpleNamespace(token=f.static)

    f.session = requests.Session()
    f.bare_session = requests.Session()
    f.bare_session.trust_env = False  # no ~/.netrc lookup (requests does one per request without auth=)
    f.static_session = requests.Session()
    f.static_session.headers["Authorization"] = f.static
    f.prepared = f.session.prepare_request(requests.Request("GET", f.url))
    f.s_auth = requests.Session()
    f.s_auth.trust_env = False
    f.s_auth.auth = auth
    f.s_static = requests.Session()
    f.s_static.trust_env = False
    f.s_static.headers.update(f.headers)

    f.pool_ours = auth.pool_manager()
    f.pool_static = urllib3.PoolManager(headers=f.headers)
    _add_requests_peers(f)
    for name in ("httpx", "httpx2"):
        setattr(f, name, _library_fixture(f, name))
    _add_httpx_auth(f)
    _add_authlib_httpx2(f)
    return f


def _add_requests_peers(f: Fixture) -> None:
    from authlib.integrations.requests_client import OAuth2Auth, OAuth2Session
    from requests_oauth2client import BearerToken, OAuth2AccessTokenAuth, OAuth2Client

    f.authlib_token = {
        "access_token": f.token,
        "token_type": "Bearer",
        "refresh_token": "r",
        "expires_at": time.time() + 3600,
    }
    session = OAuth2Session(client_id=_common.CLIENT_ID, token=f.authlib_token, token_endpoint=f.token_endpoint)
    # client= makes Authlib check expiry on every call and refresh when due (like DeviceAuth does).
    f.authlib_req = OAuth2Auth(f.authlib_token, client=session)
    # requests-oauth2client insists on https endpoints; the warm path never contacts it.
    client = OAuth2Client(token_endpoint="https://auth.example.org/token", client_id=_common.CLIENT_ID)
    f.ro2c = OAuth2AccessTokenAuth(client, BearerToken(f.token, expires_in=3600, refresh_token="r"))


def _library_fixture(f: Fixture, name: str) -> SimpleNamespace:
    lib = importlib.import_module(name)

    def handler(request: Any) -> Any:
        return lib.Response(200, content=b'{"ok":true}')

    plain = lib.Client()
    return SimpleNamespace(
        lib=lib,
        handler=handler,
        ours=getattr(f.auth, name),  # auth.httpx / auth.httpx2
        plain=plain,
        with_static=lib.Client(headers=f.headers),
        request=plain.build_request("GET", f.url),
        mock_ours=lib.Client(auth=getattr(f.auth, name), transport=lib.MockTransport(handler)),
        mock_static=lib.Client(headers=f.headers, transport=lib.MockTransport(handler)),
    )


def _add_httpx_auth(f: Fixture) -> None:
    """httpx-auth keeps its token cache in a class attribute; pre-fill one in memory and one on disk."""
    import httpx_auth
    from httpx_auth._oauth2.common import OAuth2
    from httpx_auth._oauth2.tokens import JsonTokenFileCache, TokenMemoryCache

    f.hx_auth = httpx_auth.OAuth2ClientCredentials(f.token_endpoint, client_id="c", client_secret="s")
    f.hx_memory = TokenMemoryCache()
    f.hx_memory._add_access_token(f.hx_auth.state, f.token, 3600)
    f.hx_json = JsonTokenFileCache(Path(tempfile.mkdtemp(prefix="bench-httpx-auth-")) / "tokens.json")
    f.hx_json._add_access_token(f.hx_auth.state, f.token, 3600)
    f.hx_mock = f.httpx.lib.Client(auth=f.hx_auth, transport=f.httpx.lib.MockTransport(f.httpx.handler))

    def use(cache: Any) -> Callable[[], None]:
        def switch() -> None:
            OAuth2.token_cache = cache

        return switch

    f.hx_use_memory, f.hx_use_json = use(f.hx_memory), use(f.hx_json)


def _add_authlib_httpx2(f: Fixture) -> None:
    """Authlib 1.9's httpx_client.OAuth2Auth is an httpx2.Auth (and warns on import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from authlib.integrations.httpx_client import OAuth2Auth
        except Exception as exc:
            print(f"note        Authlib httpx OAuth2Auth not importable: {exc!r}")
            OAuth2Auth = None
    f.authlib_httpx2 = None
    if OAuth2Auth is not None and issubclass(OAuth2Auth, f.httpx2.lib.Auth):
        f.authlib_httpx2 = OAuth2Auth(f.authlib_token)
        f.authlib_httpx2_mock = f.httpx2.lib.Client(
            auth=f.authlib_httpx2, transport=f.httpx2.lib.MockTransport(f.httpx2.handler)
        )


# -- the rows -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    name: str
    setup: Callable[[Fixture], Loop]


@dataclass(frozen=True)
class Case:
    library: str
    name: str
    setup: Callable[[Fixture], Loop]
    baseline: Baseline
    size: str  # "micro" (a few µs), "medium" (request construction), "mock" (MockTransport), "wire" (HTTP)
    before_batch: Callable[[Fixture], Callable[[], None]] | None = None  # untimed, before each batch
    available: Callable[[Fixture], bool] = lambda f: True


SIZES = {"micro": (2000, 500), "medium": (1000, 250), "mock": (500, 200), "wire": (200, 50)}  # (full, quick)

READ_ATTR = Baseline("read a str attribute (getattr)", lambda f: calls(getattr, f.holder, "token"))
REQUEST_STATIC = Baseline("Request(headers=static)", lambda f: calls(prepare_static, f.session, f.headers, f.url))
SESSION_HEADER = Baseline("Session.headers static, no auth", lambda f: calls(prepare_bare, f.static_session, f.url))
REQUEST_STATIC_BARE = Baseline(
    "Request(headers=static), trust_env=False", lambda f: calls(prepare_static, f.bare_session, f.headers, f.url)
)
SET_HEADER = Baseline(
    "headers[...] = static", lambda f: calls(f.prepared.headers.__setitem__, "Authorization", f.static)
)
SESSION_STATIC_GET = Baseline("Session(headers=static).get", lambda f: calls(get_closed, f.s_static.get, f.api))
POOL_STATIC = Baseline("PoolManager(headers=static).request", lambda f: calls(f.pool_static.request, "GET", f.api))


def _clear_hooks(f: Fixture) -> Callable[[], None]:
    return f.prepared.hooks["response"].clear  # DeviceAuth appends its 401 hook to every request it signs


def _requests_cases() -> list[Case]:
    g = "requests"
    return [
        Case(g, "prepare_request(auth=DeviceAuth)", lambda f: calls(prepare, f.session, f.auth, f.url),
             REQUEST_STATIC, "medium"),
        Case(g, "prepare_request(auth=DeviceAuth)", lambda f: calls(prepare, f.session, f.auth, f.url),
             SESSION_HEADER, "medium"),
        Case(g, "prepare_request(auth=DeviceAuth), trust_env=False",
             lambda f: calls(prepare, f.bare_session, f.auth, f.url), REQUEST_STATIC_BARE, "medium"),
        Case(g, "prepare_request(auth=Authlib OAuth2Auth)", lambda f: calls(prepare, f.session, f.authlib_req, f.url),
             REQUEST_STATIC, "medium"),
        Case(g, "prepare_request(auth=ro2c OAuth2AccessTokenAuth)", lambda f: calls(prepare, f.session, f.ro2c, f.url),
             REQUEST_STATIC, "medium"),
        Case(g, "DeviceAuth(prepared)", lambda f: calls(f.auth, f.prepared), SET_HEADER, "micro", _clear_hooks),
        Case(g, "Authlib OAuth2Auth(prepared)", lambda f: calls(f.authlib_req, f.prepared), SET_HEADER, "micro"),
        Case(g, "ro2c OAuth2AccessTokenAuth(prepared)", lambda f: calls(f.ro2c, f.prepared), SET_HEADER, "micro"),
        Case(g, "Session(auth=DeviceAuth).get  [loopback HTTP]", lambda f: calls(get_closed, f.s_auth.get, f.api),
             SESSION_STATIC_GET, "wire"),
    ]  # fmt: skip


def _httpx_cases(name: str) -> list[Case]:
    """The same rows for HTTPX and httpx2: ``auth.httpx`` / ``auth.httpx2`` vs a static header."""

    def lib(f: Fixture) -> Any:
        return getattr(f, name)

    set_header = Baseline(
        "request.headers[...] = static", lambda f: calls(lib(f).request.headers.__setitem__, "Authorization", f.static)
    )
    build_static = Baseline(
        "build_request, client headers", lambda f: calls(lib(f).with_static.build_request, "GET", f.url)
    )
    mock_static = Baseline("Client(headers=static).get", lambda f: calls(lib(f).mock_static.get, f.url))
    label = f"auth.{name}"
    return [
        Case(name, f"{label}.sync_auth_flow: next+close", lambda f: calls(flow_step, lib(f).ours, lib(f).request),
             set_header, "micro"),
        Case(name, f"build_request + {label} flow", lambda f: calls(build_and_flow, lib(f).plain, lib(f).ours, f.url),
             build_static, "medium"),
        Case(name, f"Client(auth={label}).get  [MockTransport]", lambda f: calls(lib(f).mock_ours.get, f.url),
             mock_static, "mock"),
    ]  # fmt: skip


def _peer_httpx_cases() -> list[Case]:
    set_httpx = Baseline(
        "request.headers[...] = static", lambda f: calls(f.httpx.request.headers.__setitem__, "Authorization", f.static)
    )
    set_httpx2 = Baseline(
        "request.headers[...] = static",
        lambda f: calls(f.httpx2.request.headers.__setitem__, "Authorization", f.static),
    )
    mock_httpx = Baseline("Client(headers=static).get", lambda f: calls(f.httpx.mock_static.get, f.url))
    mock_httpx2 = Baseline("Client(headers=static).get", lambda f: calls(f.httpx2.mock_static.get, f.url))

    def has_authlib(f: Fixture) -> bool:
        return f.authlib_httpx2 is not None

    return [
        Case("httpx", "httpx-auth OAuth2ClientCredentials flow (memory cache)",
             lambda f: calls(flow_step, f.hx_auth, f.httpx.request), set_httpx, "micro", lambda f: f.hx_use_memory),
        Case("httpx", "httpx-auth OAuth2ClientCredentials flow (JsonTokenFileCache)",
             lambda f: calls(flow_step, f.hx_auth, f.httpx.request), set_httpx, "micro", lambda f: f.hx_use_json),
        Case("httpx", "Client(auth=httpx-auth, memory cache).get  [MockTransport]",
             lambda f: calls(f.hx_mock.get, f.url), mock_httpx, "mock", lambda f: f.hx_use_memory),
        Case("httpx2", "Authlib httpx_client.OAuth2Auth flow", lambda f: calls(flow_step, f.authlib_httpx2,
             f.httpx2.request), set_httpx2, "micro", available=has_authlib),
        Case("httpx2", "Client(auth=Authlib OAuth2Auth).get  [MockTransport]",
             lambda f: calls(f.authlib_httpx2_mock.get, f.url), mock_httpx2, "mock", available=has_authlib),
    ]  # fmt: skip


def _order(cases: list[Case]) -> list[Case]:
    """Group rows by library, in the order the table reads best: requests, httpx, httpx2, urllib3."""
    order = ["engine", "requests", "httpx", "httpx2", "urllib3"]
    return sorted(cases, key=lambda c: order.index(c.library))  # stable: keeps each library's own order


CASES = _order(
    [
        Case("engine", "DeviceAuth.get_token()", lambda f: calls(f.auth.get_token), READ_ATTR, "micro"),
        *_requests_cases(),
        *_httpx_cases("httpx"),
        *_httpx_cases("httpx2"),
        *_peer_httpx_cases(),
        Case("urllib3", "auth.pool_manager().request  [loopback HTTP]",
             lambda f: calls(f.pool_ours.request, "GET", f.api), POOL_STATIC, "wire"),
    ]
)  # fmt: skip


# -- running the table ----------------------------------------------------------------------------------


@dataclass
class Result:
    case: Case
    timed: _common.Timed
    file_events: int  # during the timed batches of the measured side and its probe batch
    stat_calls: int  # during one untimed probe batch of the measured side
    base_stat_calls: int  # the same for the baseline
    size: int


def _counting_file_events(loop: Loop, counter: list[int]) -> Loop:
    def counted(n: int) -> None:
        before = _file_events[0]
        loop(n)
        counter[0] += _file_events[0] - before

    return counted


def measure(case: Case, f: Fixture, args: argparse.Namespace) -> Result:
    full, quick = SIZES[case.size]
    size = quick if args.quick else full
    ours, baseline = case.setup(f), case.baseline.setup(f)
    before = case.before_batch(f) if case.before_batch else None
    events = [0]
    timed = _common.time_against(
        _counting_file_events(ours, events),
        baseline,
        calls_per_batch=size,
        batches=args.batches,
        warmup=args.warmup,
        use_gc=args.gc,
        before_batch=before,
    )
    if before:
        before()
    with _StatCounter() as stats:
        _counting_file_events(ours, events)(size)
    with _StatCounter() as base_stats:
        baseline(size)
    return Result(case, timed, events[0], stats.count, base_stats.count, size)


def _check_responses(auth: Any, server: Any, token: str) -> None:
    """The end-to-end rows must hit a 200 with both our header and the static one, or they compare nothing."""
    s = requests.Session()
    s.trust_env = False
    assert s.get(server.api_url("me"), auth=auth).status_code == 200
    assert s.get(server.api_url("me"), headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert auth.pool_manager().request("GET", server.api_url("me")).status == 200


def print_results(results: list[Result]) -> None:
    headers = [
        "group",
        "adapter (warm, token in memory)",
        "median µs",
        "p95 µs",
        "baseline",
        "baseline median µs",
        "baseline p95 µs",
        "difference µs",
        "ratio",
        "file events",
        "os.stat",
        "baseline os.stat",
        "calls/batch",
    ]
    rows = []
    for r in results:
        median, p95, b_median, b_p95, diff, ratio = r.timed.cells()
        rows.append(
            [
                r.case.library,
                r.case.name,
                median,
                p95,
                r.case.baseline.name,
                b_median,
                b_p95,
                diff,
                ratio,
                r.file_events,
                r.stat_calls,
                r.base_stat_calls,
                r.size,
            ]
        )
    _common.print_table(headers, rows, align_left=2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per row before timing")
    parser.add_argument("--gc", action="store_true", help="leave the garbage collector on while timing")
    parser.add_argument("--quick", action="store_true", help="smaller batches, for a smoke run")
    args = parser.parse_args()
    if args.quick and args.batches == 30:
        args.batches = 5

    from oidc_server import OidcServer

    _common.print_environment(
        "deviceauth warm-path benchmark (bench_warm.py)",
        [
            f"{args.batches} timed batches per row after {args.warmup} warm-up batches; ours and baseline "
            "interleaved (A B, B A, ...)",
            "value per batch = batch wall time / calls (time.perf_counter_ns); median and p95 are over the "
            "batch values, not over single calls",
            f"gc {'ENABLED' if args.gc else 'disabled'} during each timed batch (gc.collect() before each)",
            "timings include the Python for-loop and the call that drives each operation; operations of "
            "several steps (a requests Request + prepare, an httpx flow's next + close) are one Python "
            "function on every side of the comparison",
            "rows marked [MockTransport] use httpx's in-process transport (no sockets); rows marked "
            "[loopback HTTP] send real requests to the node test server's /api/me on 127.0.0.1",
            "file events: audit events open/flock/rename/... counted in every timed batch of the deviceauth "
            "or peer column; os.stat: calls counted in one extra untimed probe batch of each side (wrapped "
            "os.stat/lstat)",
            "requests sessions keep trust_env=True (the default) unless a row says trust_env=False; with it, "
            "requests looks for ~/.netrc (os.stat calls) on every request that has no auth=",
        ],
    )
    sys.addaudithook(_audit)
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp,
        OidcServer(mode="keycloak", access_ttl=3600) as server,
    ):
        auth = _common.make_auth(server, Path(tmp) / "cache" / ".tokens.json")
        t0 = time.perf_counter()
        token = auth.get_token()  # the one login (programmatic approval)
        print(f"login       one device login in {time.perf_counter() - t0:.2f} s; then every row is warm")
        _check_responses(auth, server, token)
        print()
        fixture = build_fixture(server, auth, token)
        results = []
        for case in CASES:
            if case.available(fixture):
                results.append(measure(case, fixture, args))
                print(f"  measured {case.library}: {case.name}", file=sys.stderr, flush=True)
        after = server.stats()

    print_results(results)
    print()
    token_requests = sum(after.get("token", {}).values())
    print(
        f"server      token endpoint requests in the whole run: {token_requests} "
        f"(the login's polls; 0 refreshes: {after.get('token', {}).get('refresh_token', 0)}); "
        f"api ok={after['api']['ok']} unauthorized={after['api']['unauthorized']}"
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"total       {time.monotonic() - started:.0f} s; load avg at end {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
