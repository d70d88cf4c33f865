"""Bursts of concurrent async requests: HTTPX vs httpx2, with deviceauth and with a static header.

Run: .venv/bin/python benchmarks/bench_async_burst.py [--tasks 200] [--bursts 3] [--server local|node]

Issue 8 reported three bursts of 200 async tasks taking 1.6-2.1 s each with HTTPX but 0.3-0.4 s
with httpx2 against the same server. This script separates our share from the libraries': every
library runs the same burst with ``auth=auth.httpx``/``auth.httpx2`` (our flow: ``fresh_token()``
on the loop, a worker thread only when the token is not fresh in memory) and with a static
``Authorization`` header (no auth flow at all), against one server. A counting token source shows
how often our flow left the event loop, a profiled burst shows where the time went, and a control
runs the static burst below and above the pools' 100 connections.

The default server runs in a child process (so it does not share this process's GIL or event
loop): a small asyncio HTTP/1.1 server with keep-alive and a listen backlog of 1024 that answers 200
to the expected bearer token and 401 to anything else; the token is put in a temporary ``FileStore``
with the store's own API, so no Node and no OAuth server are needed. ``--server node`` uses the
oidc-provider test server's ``/api`` instead (one device login, approved in code), as the original
report did. Reports, never gates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common

TOKEN = "bench-" + "t" * 40  # made up, for a local server
CLIENT_ID = "bench-client"
POOL_CONNECTIONS = 100  # HTTPX's and httpx2's default max_connections (printed from the libraries below)


# -- the server (child process) ----------------------------------------------------------------


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    expected = f"authorization: bearer {TOKEN}".lower().encode()
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            ok = any(line.strip().lower() == expected for line in head.split(b"\r\n"))
            body = b'{"ok":true}' if ok else b'{"error":"invalid_token"}'
            status = b"200 OK" if ok else b"401 Unauthorized"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body
            )  # fmt: skip
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def _serve() -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def start_server() -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    port = int(child.stdout.readline())
    return child, f"http://127.0.0.1:{port}"


# -- the token, through the store's own API ------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the bursts go and the identity whose token they carry."""

    api: str  # requests go to f"{api}/t{i}"
    issuer: str
    client_id: str
    scope: str | None
    token: str


def make_store(directory: Path, target: Target) -> Any:
    """A FileStore holding a fresh token for the target's identity, written with the store's own API."""
    from deviceauth import Token
    from deviceauth.store import FileStore, Identity

    store = FileStore(directory / ".tokens.json")
    now = time.time()
    token = Token(access_token=target.token, expires_at=now + 3600, obtained_at=now, refresh_token="bench-refresh")
    with store.transaction(Identity(target.issuer, target.client_id, target.scope)) as txn:
        txn.put(token, replacing=None)  # type: ignore[union-attr]
    return store


def make_auth(target: Target, store: Any) -> Any:
    from deviceauth import DeviceAuth

    return DeviceAuth(target.issuer, target.client_id, scope=target.scope, cache=store, interactive=False)


class CountingSource:
    """A TokenSource that counts what the adapter asked for (fresh_token: on the loop; the others: in a thread)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = {"fresh_token": 0, "fresh_token None": 0, "get_token": 0, "renew": 0}

    def get_token(self) -> str:
        self.calls["get_token"] += 1
        return str(self.inner.get_token())

    def fresh_token(self) -> str | None:
        self.calls["fresh_token"] += 1
        token: str | None = self.inner.fresh_token()
        if token is None:
            self.calls["fresh_token None"] += 1
        return token

    def renew(self, rejected: str | None = None) -> str:
        self.calls["renew"] += 1
        return str(self.inner.renew(rejected))


# -- the bursts ----------------------------------------------------------------------------------


@dataclass
class Config:
    name: str
    library: str
    make_client: Callable[[], Any]
    seconds: list[float] = field(default_factory=list)


async def burst(client: Any, api: str, tasks: int) -> float:
    started = time.perf_counter()
    responses = await asyncio.gather(*(client.get(f"{api}/t{i}") for i in range(tasks)))
    elapsed = time.perf_counter() - started
    statuses = {r.status_code for r in responses}
    if statuses != {200}:
        raise SystemExit(f"a burst got statuses {sorted(statuses)}: it would measure nothing")
    return elapsed


def configs(auth: Any, token: str, limits_note: list[str]) -> list[Config]:
    import httpx
    import httpx2

    static = {"Authorization": f"Bearer {token}"}
    rows = []
    for lib, ours in ((httpx, auth.httpx), (httpx2, auth.httpx2)):
        name = lib.__name__
        defaults = getattr(getattr(lib, "_config", None), "DEFAULT_LIMITS", "unknown")
        limits_note.append(f"{name} default pool limits: {defaults!r}")
        rows += [
            Config(f"AsyncClient(auth=auth.{name})", name, lambda lib=lib, a=ours: lib.AsyncClient(auth=a)),
            Config("AsyncClient(headers=static)", name, lambda lib=lib: lib.AsyncClient(headers=static)),
            Config(
                "AsyncClient(headers=static), max_keepalive=100",
                name,
                lambda lib=lib: lib.AsyncClient(
                    headers=static, limits=lib.Limits(max_connections=100, max_keepalive_connections=100)
                ),
            ),
        ]
    return rows


async def run_bursts(rows: list[Config], url: str, tasks: int, bursts: int) -> None:
    clients = [row.make_client() for row in rows]
    try:
        for _ in range(bursts):  # round robin, so drift in machine speed hits every row alike
            for row, client in zip(rows, clients, strict=True):
                row.seconds.append(await burst(client, url, tasks))
    finally:
        for client in clients:
            await client.aclose()


async def one_burst(make_client: Callable[[], Any], url: str, tasks: int) -> float:
    async with make_client() as client:
        return await burst(client, url, tasks)


def profile_share(make_client: Callable[[], Any], url: str, tasks: int) -> tuple[float, float, float, float]:
    """One profiled burst: wall s, profiled s, shares of the pool's assignment pass and of deviceauth's code."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    asyncio.run(one_burst(make_client, url, tasks))
    profiler.disable()
    wall = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    assign = sum(
        cumulative
        for (_file, _line, function), (_cc, _nc, _tt, cumulative, _callers) in stats.stats.items()  # type: ignore[attr-defined]
        if function == "_assign_requests_to_connections"
    )
    package = os.sep + "deviceauth" + os.sep
    ours = sum(own for (file, _l, _f), (_cc, _nc, own, _cum, _callers) in stats.stats.items() if package in file)  # type: ignore[attr-defined]
    return wall, total, assign / total, ours / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200, help="concurrent tasks per burst")
    parser.add_argument("--bursts", type=int, default=3, help="bursts per row (one client per row)")
    parser.add_argument(
        "--server",
        choices=["local", "node"],
        default="local",
        help="local: the asyncio server here (default); node: the oidc-provider test server's /api (needs Node)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve())
        return 0
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-burst-")))
        if args.server == "local":
            child, url = start_server()
            stack.callback(child.wait, timeout=10)
            stack.callback(child.terminate)
            target = Target(f"{url}/api", url, CLIENT_ID, None, TOKEN)
            auth = make_auth(target, make_store(tmp, target))
            server_note = "server: asyncio HTTP/1.1 keep-alive in a child process on 127.0.0.1, backlog 1024"
        else:
            from oidc_server import OidcServer

            server = stack.enter_context(OidcServer(mode="keycloak", access_ttl=3600))
            auth = _common.make_auth(server, tmp / "login" / ".tokens.json")
            token = auth.get_token()  # one device login, approved in code
            target = Target(server.api_url("").rstrip("/"), server.issuer, _common.CLIENT_ID, _common.SCOPE, token)
            server_note = "server: the oidc-provider test server (Node) on 127.0.0.1, its /api echo endpoint"
        auth.get_token()  # in memory from now on: every timed burst is warm
        limits_note: list[str] = []
        rows = configs(auth, target.token, limits_note)
        _common.print_environment(
            "async bursts: HTTPX vs httpx2 (bench_async_burst.py)",
            [
                f"{args.tasks} tasks per burst (asyncio.gather of client.get), {args.bursts} bursts per row, "
                "one AsyncClient per row for all its bursts, rows round robin",
                server_note,
                "deviceauth rows are warm (token in memory); 'static' rows send the same header without auth=",
                *limits_note,
            ],
        )
        asyncio.run(run_bursts(rows, target.api, args.tasks, args.bursts))
        print_bursts(rows)
        print()
        print_our_share(auth, target, args.tasks, tmp)
        print()
        print_profiles(rows, target.api, args.tasks)
        print()
        print_queue_control(target, args.tasks, args.bursts)
    return 0


def print_bursts(rows: list[Config]) -> None:
    base = {row.library: _common.median(row.seconds) for row in rows if row.name == "AsyncClient(headers=static)"}
    httpx2_same = {
        row.name.replace("httpx2", "LIB"): _common.median(row.seconds) for row in rows if row.library == "httpx2"
    }
    table = []
    for row in rows:
        m = _common.median(row.seconds)
        vs_2 = httpx2_same.get(row.name.replace(row.library, "LIB"))
        table.append(
            [
                row.library,
                row.name,
                " ".join(f"{s:.2f}" for s in row.seconds),
                f"{m:.2f}",
                f"{m / base[row.library]:.2f}x",
                f"{m / vs_2:.2f}x" if vs_2 else "-",
            ]
        )
    headers = ["library", "row", "bursts s", "median s", "vs static, same library", "vs the httpx2 row"]
    _common.print_table(headers, table, align_left=2)


def print_our_share(auth: Any, target: Target, tasks: int, tmp: Path) -> None:
    """How often our flow left the loop: warm (token in memory) and cold (a new store location)."""
    import httpx
    import httpx2

    from deviceauth.httpx import HttpxAuth
    from deviceauth.httpx2 import Httpx2Auth

    table = []
    for lib, flow in ((httpx, HttpxAuth), (httpx2, Httpx2Auth)):
        warm = CountingSource(auth)
        seconds = asyncio.run(one_burst(functools.partial(lib.AsyncClient, auth=flow(warm)), target.api, tasks))
        table.append([lib.__name__, "warm: token in memory", f"{seconds:.2f}", *warm.calls.values()])
        # Cold: a new store location has its own in-memory state, so the first burst reads the store.
        cold_dir = tmp / f"cold-{lib.__name__}"
        cold_dir.mkdir()
        cold = CountingSource(make_auth(target, make_store(cold_dir, target)))
        seconds = asyncio.run(one_burst(functools.partial(lib.AsyncClient, auth=flow(cold)), target.api, tasks))
        table.append([lib.__name__, "cold: token only in the store", f"{seconds:.2f}", *cold.calls.values()])
    headers = [
        "library",
        "deviceauth state before the burst",
        "burst s",
        "fresh_token() on the loop",
        "of which None",
        "get_token() in a thread",
        "renew()",
    ]
    _common.print_table(headers, table, align_left=2)


def print_profiles(rows: list[Config], url: str, tasks: int) -> None:
    table = []
    for row in rows:
        if "max_keepalive" in row.name:
            continue
        wall, profiled, assign, ours = profile_share(row.make_client, url, tasks)
        table.append(
            [row.library, row.name + " (new client)", f"{wall:.2f}", f"{profiled:.2f}", f"{assign:.0%}", f"{ours:.1%}"]
        )
    headers = [
        "library",
        "profiled burst (cProfile)",
        "wall s",
        "profiled s",
        "in the pool's _assign_requests_to_connections (cumulative)",
        "in deviceauth's own code (own time)",
    ]
    _common.print_table(headers, table, align_left=2)


def print_queue_control(target: Target, tasks: int, bursts: int) -> None:
    """The same static-header burst below and above the pool's 100 connections: does the gap need a queue?"""
    import httpx
    import httpx2

    static = {"Authorization": f"Bearer {target.token}"}
    sizes = (tasks // 4, tasks)
    seconds: dict[tuple[str, int], list[float]] = {}

    async def run() -> None:
        for _ in range(bursts):
            for lib in (httpx, httpx2):
                for n in sizes:
                    async with lib.AsyncClient(headers=static) as client:
                        seconds.setdefault((lib.__name__, n), []).append(await burst(client, target.api, n))

    asyncio.run(run())
    table = []
    for n in sizes:
        a, b = _common.median(seconds[("httpx", n)]), _common.median(seconds[("httpx2", n)])
        queued = "yes" if n > POOL_CONNECTIONS else "no"
        table.append(
            [str(n), queued, f"{a:.2f}", f"{b:.2f}", f"{a / b:.2f}x", f"{a / n * 1000:.1f}", f"{b / n * 1000:.1f}"]
        )
    headers = [
        "tasks (static header, new client per burst)",
        f"queued beyond {POOL_CONNECTIONS} connections",
        "httpx median s",
        "httpx2 median s",
        "httpx / httpx2",
        "httpx ms per task",
        "httpx2 ms per task",
    ]
    _common.print_table(headers, table, align_left=2)


if __name__ == "__main__":
    sys.exit(main())
