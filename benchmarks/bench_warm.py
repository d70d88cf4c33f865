"""Warm per-request cost of the auth step: deviceauth vs a static header, and peers on the same footing.

Run: .venv/bin/python benchmarks/bench_warm.py [--quick]

Every row times one operation with a fresh token already in memory ("warm"), and the static-header
baseline for the same operation in the same run, interleaved batch by batch (A B, B A, A B, ...),
so drift in CPU speed hits both alike. Reports, never gates.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common

Loop = Callable[[int], None]

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


@dataclass
class Case:
    group: str
    name: str
    ours: Loop
    baseline_name: str
    baseline: Loop
    size: int  # calls per batch
    after_batch: Callable[[], None] | None = None


@dataclass
class Result:
    case: Case
    ours: list[float]  # µs per call, one value per batch
    base: list[float]
    file_events: int  # during the timed loops of `ours`
    stat_calls: int  # during one untimed probe batch of `ours`
    base_stat_calls: int  # the same for the baseline
    calls: int


def _batch(loop: Loop, n: int, use_gc: bool) -> float:
    gc.collect()
    if not use_gc:
        gc.disable()
    try:
        start = time.perf_counter_ns()
        loop(n)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / n / 1000.0


def measure(case: Case, batches: int, warmup: int, use_gc: bool) -> Result:
    for _ in range(warmup):
        case.ours(case.size)
        case.baseline(case.size)
        if case.after_batch:
            case.after_batch()
    ours: list[float] = []
    base: list[float] = []
    events = 0
    for i in range(batches):
        order = ("ours", "base") if i % 2 == 0 else ("base", "ours")
        for which in order:
            if which == "ours":
                before = _file_events[0]
                ours.append(_batch(case.ours, case.size, use_gc))
                events += _file_events[0] - before
            else:
                base.append(_batch(case.baseline, case.size, use_gc))
            if case.after_batch:
                case.after_batch()
    with _StatCounter() as stats:
        before = _file_events[0]
        case.ours(case.size)
        events += _file_events[0] - before
    if case.after_batch:
        case.after_batch()
    with _StatCounter() as base_stats:
        case.baseline(case.size)
    return Result(case, ours, base, events, stats.count, base_stats.count, case.size * (batches + 1))


# -- the cases -------------------------------------------------------------------------------------


def build_cases(server: Any, auth: Any, token: str, quick: bool) -> list[Case]:
    import httpx
    import httpx2
    import requests
    import urllib3

    micro = 500 if quick else 2000  # operations of a few µs
    medium = 250 if quick else 1000  # request construction, ~20-100 µs
    mock = 200 if quick else 500
    wire = 50 if quick else 200
    static = f"Bearer {token}"
    headers = {"Authorization": static}
    url = "https://api.example.org/items"  # never contacted: no I/O in these rows
    api = server.api_url("me")  # real loopback HTTP (node test server): end-to-end rows
    expires_at = time.time() + 3600
    cases: list[Case] = []

    # -- engine ------------------------------------------------------------------------------
    class Holder:
        token = static

    holder = Holder()

    def get_token(n: int) -> None:
        f = auth.get_token
        for _ in range(n):
            f()

    def read_attr(n: int) -> None:
        h = holder
        for _ in range(n):
            h.token  # noqa: B018

    cases.append(Case("engine", "DeviceAuth.get_token()", get_token, "read a str attribute", read_attr, micro))

    # -- requests ----------------------------------------------------------------------------
    session = requests.Session()

    # trust_env=False: no ~/.netrc lookup (requests does one per request that has no auth=).
    bare_session = requests.Session()
    bare_session.trust_env = False

    def prepare_with(a: Any, on: requests.Session = session) -> Loop:
        def loop(n: int) -> None:
            s, R = on, requests.Request
            for _ in range(n):
                s.prepare_request(R("GET", url, auth=a))

        return loop

    def prepare_static_on(on: requests.Session) -> Loop:
        def loop(n: int) -> None:
            s, R = on, requests.Request
            for _ in range(n):
                s.prepare_request(R("GET", url, headers={"Authorization": static}))

        return loop

    prepare_static = prepare_static_on(session)

    static_session = requests.Session()
    static_session.headers["Authorization"] = static

    def prepare_session_header(n: int) -> None:
        s, R = static_session, requests.Request
        for _ in range(n):
            s.prepare_request(R("GET", url))

    prepared = session.prepare_request(requests.Request("GET", url))

    def call_with(a: Any) -> Loop:
        def loop(n: int) -> None:
            p = prepared
            for _ in range(n):
                a(p)

        return loop

    def set_header(n: int) -> None:
        h = prepared.headers
        for _ in range(n):
            h["Authorization"] = static

    def clear_hooks() -> None:  # DeviceAuth registers its 401 hook on every request it signs
        prepared.hooks["response"].clear()

    from authlib.integrations.requests_client import OAuth2Auth as AuthlibRequestsAuth
    from authlib.integrations.requests_client import OAuth2Session
    from requests_oauth2client import BearerToken, OAuth2AccessTokenAuth, OAuth2Client

    token_endpoint = f"{server.issuer}/protocol/openid-connect/token"
    authlib_token = {"access_token": token, "token_type": "Bearer", "refresh_token": "r", "expires_at": expires_at}
    authlib_session = OAuth2Session(client_id=_common.CLIENT_ID, token=authlib_token, token_endpoint=token_endpoint)
    # client= makes Authlib check expiry on every call and refresh when due (like DeviceAuth does).
    authlib_req = AuthlibRequestsAuth(authlib_token, client=authlib_session)
    # requests-oauth2client insists on https endpoints; the warm path never contacts it.
    ro2c_client = OAuth2Client(token_endpoint="https://auth.example.org/token", client_id=_common.CLIENT_ID)
    ro2c = OAuth2AccessTokenAuth(ro2c_client, BearerToken(token, expires_in=3600, refresh_token="r"))

    g = "requests"
    cases += [
        Case(g, "prepare_request(auth=DeviceAuth)", prepare_with(auth), "Request(headers=static)", prepare_static,
             medium),
        Case(g, "prepare_request(auth=DeviceAuth)", prepare_with(auth), "Session.headers static, no auth",
             prepare_session_header, medium),
        Case(g, "prepare_request(auth=DeviceAuth), trust_env=False", prepare_with(auth, bare_session),
             "Request(headers=static), trust_env=False", prepare_static_on(bare_session), medium),
        Case(g, "prepare_request(auth=Authlib OAuth2Auth)", prepare_with(authlib_req), "Request(headers=static)",
             prepare_static, medium),
        Case(g, "prepare_request(auth=ro2c OAuth2AccessTokenAuth)", prepare_with(ro2c), "Request(headers=static)",
             prepare_static, medium),
        Case(g, "DeviceAuth(prepared)", call_with(auth), "headers[...] = static", set_header, micro, clear_hooks),
        Case(g, "Authlib OAuth2Auth(prepared)", call_with(authlib_req), "headers[...] = static", set_header, micro),
        Case(g, "ro2c OAuth2AccessTokenAuth(prepared)", call_with(ro2c), "headers[...] = static", set_header, micro),
    ]  # fmt: skip

    s_auth = requests.Session()
    s_auth.trust_env = False
    s_auth.auth = auth
    s_static = requests.Session()
    s_static.trust_env = False
    s_static.headers.update(headers)

    def session_get(s: requests.Session) -> Loop:
        def loop(n: int) -> None:
            get = s.get
            for _ in range(n):
                get(api).close()

        return loop

    cases.append(
        Case(g, "Session(auth=DeviceAuth).get  [loopback HTTP]", session_get(s_auth), "Session(headers=static).get",
             session_get(s_static), wire)
    )  # fmt: skip

    # -- httpx and httpx2 --------------------------------------------------------------------
    import httpx_auth
    from httpx_auth._oauth2.common import OAuth2 as HttpxAuthOAuth2
    from httpx_auth._oauth2.tokens import JsonTokenFileCache, TokenMemoryCache

    def flow_loop(flow_auth: Any, request: Any) -> Loop:
        def loop(n: int) -> None:
            f, r = flow_auth.sync_auth_flow, request
            for _ in range(n):
                gen = f(r)
                next(gen)
                gen.close()

        return loop

    def header_loop(request: Any) -> Loop:
        def loop(n: int) -> None:
            h = request.headers
            for _ in range(n):
                h["Authorization"] = static

        return loop

    def build_flow_loop(client: Any, flow_auth: Any) -> Loop:
        def loop(n: int) -> None:
            b, f = client.build_request, flow_auth.sync_auth_flow
            for _ in range(n):
                gen = f(b("GET", url))
                next(gen)
                gen.close()

        return loop

    def build_loop(client: Any) -> Loop:
        def loop(n: int) -> None:
            b = client.build_request
            for _ in range(n):
                b("GET", url)

        return loop

    def get_loop(client: Any) -> Loop:
        def loop(n: int) -> None:
            get = client.get
            for _ in range(n):
                get(url)

        return loop

    for lib, ours, label in ((httpx, auth.httpx, "auth.httpx"), (httpx2, auth.httpx2, "auth.httpx2")):
        g = lib.__name__

        def handler(request: Any, _lib: Any = lib) -> Any:
            return _lib.Response(200, content=b'{"ok":true}')

        plain = lib.Client()
        with_static = lib.Client(headers=headers)
        request = plain.build_request("GET", url)
        mock_auth = lib.Client(auth=ours, transport=lib.MockTransport(handler))
        mock_static = lib.Client(headers=headers, transport=lib.MockTransport(handler))
        cases += [
            Case(g, f"{label}.sync_auth_flow: next+close", flow_loop(ours, request), "request.headers[...] = static",
                 header_loop(request), micro),
            Case(g, f"build_request + {label} flow", build_flow_loop(plain, ours), "build_request, client headers",
                 build_loop(with_static), medium),
            Case(g, f"Client(auth={label}).get  [MockTransport]", get_loop(mock_auth), "Client(headers=static).get",
                 get_loop(mock_static), mock),
        ]  # fmt: skip
        if lib is httpx:
            # httpx-auth: its token cache is a class attribute; pre-fill it so the flow is warm.
            memory = TokenMemoryCache()
            hx_auth = httpx_auth.OAuth2ClientCredentials(token_endpoint, client_id="c", client_secret="s")
            memory._add_access_token(hx_auth.state, token, 3600)
            json_path = Path(tempfile.mkdtemp(prefix="bench-httpx-auth-")) / "tokens.json"
            json_cache = JsonTokenFileCache(json_path)
            json_cache._add_access_token(hx_auth.state, token, 3600)

            def use(cache: Any, loop: Loop) -> Loop:
                def run(n: int) -> None:
                    saved = HttpxAuthOAuth2.token_cache
                    HttpxAuthOAuth2.token_cache = cache
                    try:
                        loop(n)
                    finally:
                        HttpxAuthOAuth2.token_cache = saved

                return run

            hx_mock = lib.Client(auth=hx_auth, transport=lib.MockTransport(handler))
            cases += [
                Case(g, "httpx-auth OAuth2ClientCredentials flow (memory cache)",
                     use(memory, flow_loop(hx_auth, request)), "request.headers[...] = static", header_loop(request),
                     micro),
                Case(g, "httpx-auth OAuth2ClientCredentials flow (JsonTokenFileCache)",
                     use(json_cache, flow_loop(hx_auth, request)), "request.headers[...] = static",
                     header_loop(request), micro),
                Case(g, "Client(auth=httpx-auth, memory cache).get  [MockTransport]", use(memory, get_loop(hx_mock)),
                     "Client(headers=static).get", get_loop(mock_static), mock),
            ]  # fmt: skip
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    from authlib.integrations.httpx_client import OAuth2Auth as AuthlibHttpxAuth
                except Exception as exc:
                    print(f"note        Authlib httpx OAuth2Auth not importable: {exc!r}")
                    AuthlibHttpxAuth = None
            if AuthlibHttpxAuth is not None and issubclass(AuthlibHttpxAuth, lib.Auth):
                a2 = AuthlibHttpxAuth(authlib_token)
                a2_mock = lib.Client(auth=a2, transport=lib.MockTransport(handler))
                cases += [
                    Case(g, "Authlib httpx_client.OAuth2Auth flow", flow_loop(a2, request),
                         "request.headers[...] = static", header_loop(request), micro),
                    Case(g, "Client(auth=Authlib OAuth2Auth).get  [MockTransport]", get_loop(a2_mock),
                         "Client(headers=static).get", get_loop(mock_static), mock),
                ]  # fmt: skip

    # -- urllib3 -----------------------------------------------------------------------------
    ours_pm = auth.pool_manager()
    static_pm = urllib3.PoolManager(headers=headers)

    def pm_loop(pm: Any) -> Loop:
        def loop(n: int) -> None:
            request = pm.request
            for _ in range(n):
                request("GET", api)

        return loop

    cases.append(
        Case("urllib3", "auth.pool_manager().request  [loopback HTTP]", pm_loop(ours_pm),
             "PoolManager(headers=static).request", pm_loop(static_pm), wire)
    )  # fmt: skip
    return cases


def _check_responses(auth: Any, server: Any, token: str) -> None:
    """The end-to-end rows must hit a 200 with both our header and the static one, or they compare nothing."""
    import requests

    s = requests.Session()
    s.trust_env = False
    assert s.get(server.api_url("me"), auth=auth).status_code == 200
    assert s.get(server.api_url("me"), headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert auth.pool_manager().request("GET", server.api_url("me")).status == 200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per row before timing")
    parser.add_argument("--gc", action="store_true", help="leave the garbage collector on while timing")
    parser.add_argument("--quick", action="store_true", help="smaller batches, for a smoke run")
    args = parser.parse_args()
    batches = 5 if args.quick and args.batches == 30 else args.batches

    from oidc_server import OidcServer

    _common.print_environment(
        "deviceauth warm-path benchmark (bench_warm.py)",
        [
            f"{batches} timed batches per row after {args.warmup} warm-up batches; ours and baseline "
            "interleaved (A B, B A, ...)",
            "value per batch = batch wall time / calls (time.perf_counter_ns); median and p95 are over the "
            "batch values, not over single calls",
            f"gc {'ENABLED' if args.gc else 'disabled'} during each timed batch (gc.collect() before each)",
            "timings include the Python for-loop and the method call that drive them (same in both columns)",
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
        cache = Path(tmp) / "cache" / ".tokens.json"
        auth = _common.make_auth(server, cache)
        t0 = time.perf_counter()
        token = auth.get_token()  # the one login (programmatic approval)
        print(f"login       one device login in {time.perf_counter() - t0:.2f} s; then every row is warm")
        _check_responses(auth, server, token)
        auth.get_token()
        print()

        results = []
        for case in build_cases(server, auth, token, args.quick):
            results.append(measure(case, batches, args.warmup, args.gc))
            print(f"  measured {case.group}: {case.name}", file=sys.stderr, flush=True)
        after = server.stats()

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
        m, b = _common.median(r.ours), _common.median(r.base)
        rows.append(
            [
                r.case.group,
                r.case.name,
                f"{m:.2f}",
                f"{_common.percentile(r.ours, 95):.2f}",
                r.case.baseline_name,
                f"{b:.2f}",
                f"{_common.percentile(r.base, 95):.2f}",
                f"{m - b:+.2f}",
                f"{m / b:.2f}x",
                r.file_events,
                r.stat_calls,
                r.base_stat_calls,
                r.case.size,
            ]
        )
    _common.print_table(headers, rows, align_left=2)
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
