"""The refresh herd: N processes find the same stale token at the same moment.

Run: .venv/bin/python benchmarks/bench_herd.py [--reps 3] [--n 1 4 16 64]

deviceauth: every process calls DeviceAuth(...).get_token() on a cache whose access token is stale.
redis: the same over a RedisStore (a private redis-server on 127.0.0.1, started here; skipped without
/usr/bin/redis-server): processes share nothing but Redis, waiters sleep on its pub/sub channel.
naive (the baseline, same run): every process refreshes the same refresh token with its own Authlib
OAuth2Session, as users do without a shared lock. The test server rotates refresh tokens and, like
Keycloak with reuse detection, revokes the whole grant when a consumed refresh token is used again.
Reports, never gates.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import queue
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common
import _herd_worker

READY_TIMEOUT = 120.0
RESULT_TIMEOUT = 120.0
JOIN_TIMEOUT = 10.0


@dataclass
class Round:
    mode: str
    n: int
    refreshes: int = 0
    invalid_grant: int = 0
    failures: int = 0
    usable: int = 0
    distinct_tokens: int = 0
    last_done_ms: float = 0.0
    median_done_ms: float = 0.0
    last_woke_ms: float = 0.0
    cpu_ms: float = 0.0  # CPU time all N processes used between the release and holding a token
    written_ms: float = float("nan")  # deviceauth: when the new token reached the cache file
    other_token_requests: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _key(server: Any) -> str:
    return f"{server.issuer} {_common.CLIENT_ID} {_common.SCOPE}"


def _read_entry(cache: Path, server: Any) -> dict[str, Any]:
    return json.loads(cache.read_text())["identities"][_key(server)]["token"]


def make_stale(cache: Path, server: Any) -> None:
    """Expire the cached access token (keep the refresh token), written atomically like deviceauth does."""
    data = json.loads(cache.read_text())
    data["identities"][_key(server)]["token"]["expires_at"] = time.time() - 1
    temp = cache.with_name(cache.name + ".bench.tmp")
    temp.write_text(json.dumps(data))
    os.chmod(temp, 0o600)
    os.replace(temp, cache)


def make_stale_in_redis(url: str, server: Any) -> None:
    """Expire the stored access token (keep the refresh token), through the store's own write."""
    from deviceauth._redisstore import RedisStore
    from deviceauth._settings import Identity

    store = RedisStore(url)
    identity = Identity(server.issuer, _common.CLIENT_ID, _common.SCOPE)
    with store.transaction(identity) as txn:
        assert txn.token is not None  # type: ignore[union-attr]
        stale = dataclasses.replace(txn.token, expires_at=time.time() - 1)  # type: ignore[union-attr]
        txn.put(stale, replacing=stale.refresh_token)  # type: ignore[union-attr]


def _redis_written_ms(url: str, server: Any, released: float) -> float:
    """When the refreshing process got its new token (the stored token's obtained_at), after the release."""
    from deviceauth._redisstore import RedisStore
    from deviceauth._settings import Identity

    token = RedisStore(url).read(Identity(server.issuer, _common.CLIENT_ID, _common.SCOPE))
    return (token.obtained_at - released) * 1000 if token is not None else float("nan")


def _usable(server: Any, tokens: list[str | None]) -> int:
    """How many processes ended with a token the API accepts (checked after every process is done)."""
    import requests

    session = requests.Session()
    session.trust_env = False
    verdict: dict[str, bool] = {}
    for token in {t for t in tokens if t}:
        response = session.get(server.api_url("me"), headers={"Authorization": f"Bearer {token}"}, timeout=10)
        verdict[token] = response.status_code == 200
    return sum(1 for t in tokens if t and verdict[t])


def run_round(ctx: Any, mode: str, n: int, server: Any, cache: Path | str, token_endpoint: str) -> Round:
    refresh_token = _read_entry(Path(cache), server).get("refresh_token", "") if mode == "naive" else ""
    ready, results = ctx.Queue(), ctx.Queue()
    go, release = ctx.Pipe(duplex=False)
    args = (mode, server.issuer, str(cache), token_endpoint, refresh_token, ready, go, results)
    procs = [ctx.Process(target=_herd_worker.worker, args=args, daemon=True) for _ in range(n)]
    result = Round(mode, n)
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + READY_TIMEOUT
        for _ in range(n):
            message = ready.get(timeout=max(0.1, deadline - time.monotonic()))
            if message["error"]:
                raise RuntimeError(f"a worker failed to start: {message['error']}")
        server.reset_stats()
        released = time.time()
        release.close()  # EOF on every worker's read end at once
        reports = []
        deadline = time.monotonic() + RESULT_TIMEOUT
        for _ in range(n):
            reports.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
    except queue.Empty:
        raise RuntimeError(f"{mode} N={n}: workers did not report within the time limit") from None
    finally:
        release.close()
        go.close()
        for p in procs:
            p.join(JOIN_TIMEOUT)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(JOIN_TIMEOUT)
    stats = server.stats()
    if mode == "deviceauth":
        result.written_ms = (Path(cache).stat().st_mtime - released) * 1000
    elif mode == "redis":
        result.written_ms = _redis_written_ms(str(cache), server, released)
    tokens = [r["token"] for r in reports]
    done_ms = [(r["done"] - released) * 1000 for r in reports]
    result.refreshes = stats.get("token", {}).get("refresh_token", 0)
    result.invalid_grant = stats.get("token_errors", {}).get("invalid_grant", 0)
    result.other_token_requests = {k: v for k, v in stats.get("token", {}).items() if k != "refresh_token"}
    if stats.get("discovery"):
        result.other_token_requests["discovery"] = stats["discovery"]
    result.failures = sum(1 for r in reports if r["error"])
    result.errors = sorted({r["error"] for r in reports if r["error"]})
    result.distinct_tokens = len({hashlib.sha256(t.encode()).hexdigest() for t in tokens if t})
    result.usable = _usable(server, tokens)
    result.last_done_ms = max(done_ms)
    result.median_done_ms = _common.median(done_ms)
    result.last_woke_ms = max((r["woke"] - released) * 1000 for r in reports)
    result.cpu_ms = sum(r.get("cpu", 0.0) for r in reports) * 1000
    return result


def refresh_round_trips(server: Any, cache: Path, token_endpoint: str, count: int) -> tuple[list[float], list[float]]:
    """One refresh alone: `count` cold (new session, new connection, as a fresh process has) and warm."""
    from authlib.integrations.requests_client import OAuth2Session

    refresh_token = _read_entry(cache, server)["refresh_token"]
    cold: list[float] = []
    warm: list[float] = []
    for _ in range(count):
        session = OAuth2Session(client_id=_common.CLIENT_ID, token_endpoint_auth_method="none", default_timeout=30)
        start = time.perf_counter()
        refresh_token = session.refresh_token(token_endpoint, refresh_token=refresh_token)["refresh_token"]
        cold.append((time.perf_counter() - start) * 1000)
        session.close()
    session = OAuth2Session(client_id=_common.CLIENT_ID, token_endpoint_auth_method="none", default_timeout=30)
    session.refresh_token(token_endpoint, refresh_token=refresh_token)  # opens the connection
    refresh_token = session.token["refresh_token"]
    for _ in range(count):
        start = time.perf_counter()
        refresh_token = session.refresh_token(token_endpoint, refresh_token=refresh_token)["refresh_token"]
        warm.append((time.perf_counter() - start) * 1000)
    session.close()
    return cold, warm


def _fmt(values: list[float], digits: int = 0) -> str:
    """median, with min–max when the repetitions disagree."""
    m = _common.median(values)
    lo, hi = min(values), max(values)
    text = f"{m:.{digits}f}"
    if f"{lo:.{digits}f}" != f"{hi:.{digits}f}":
        text += f" ({lo:.{digits}f}–{hi:.{digits}f})"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rtt-samples", type=int, default=20)
    parser.add_argument("--start-method", choices=["forkserver", "spawn"], default="forkserver")
    args = parser.parse_args()

    from oidc_server import OidcServer

    ctx = multiprocessing.get_context(args.start_method)
    if args.start_method == "forkserver":
        # Imports are paid once in the fork server, not timed; each worker is still a fresh process
        # with no deviceauth state in memory (nothing is created before the fork).
        ctx.set_forkserver_preload(["_herd_worker", "deviceauth", "authlib.integrations.requests_client", "requests"])

    _common.print_environment(
        "deviceauth refresh-herd benchmark (bench_herd.py)",
        [
            f"N in {args.n}, {args.reps} repetitions each (rounds interleaved: rep 1 for every N, then rep 2, ...); "
            "table cells: median over repetitions, (min–max) when they differ",
            f"processes: multiprocessing '{args.start_method}'"
            + (" with deviceauth/Authlib/requests preloaded in the fork server" if args.start_method == "forkserver"
               else ""),
            "all N processes are started and ready (DeviceAuth or OAuth2Session built, no I/O yet) before the "
            "release; the release is closing the write end of one pipe (every worker polls the read end, so the "
            "kernel wakes all at once); process start-up is not timed",
            "time = wall clock (time.time()) from just before the release in the parent until the process "
            "holds its token; includes the OS waking N processes on the CPUs listed above",
            "refreshes / invalid_grant: counted by the test server (token endpoint, grant_type=refresh_token / "
            "error=invalid_grant) between the release and the end of the round",
            "last-woke: when the last process started running after the release; cache written: mtime of "
            ".tokens.json after the round (the refreshing process's atomic write), relative to the release",
            "cpu: process_time() the N processes spent between the release and holding the token, summed "
            "(waiters that poll burn it; waiters that sleep on a socket do not)",
            "usable: processes whose final access token the test API (/api/me) accepts, checked after all "
            "are done",
            "server: oidc-provider, Keycloak-shaped routes, refresh token rotation with reuse detection "
            "(reuse revokes the grant); runs on the same machine",
        ],
    )  # fmt: skip
    started = time.monotonic()
    sys.path.insert(0, str(_common.TESTS / "redis"))
    import redis_server

    with (
        tempfile.TemporaryDirectory(prefix="bench-herd-") as tmp,
        OidcServer(mode="keycloak", access_ttl=600, refresh_ttl=3600) as server,
        redis_server.RedisServer() if redis_server.available() else contextlib.nullcontext() as redis_srv,
    ):
        cache = Path(tmp) / "cache" / ".tokens.json"
        auth = _common.make_auth(server, cache)
        redis_url = redis_srv.url() if redis_srv is not None else None
        if redis_url is not None:
            _common.make_auth(server, redis_url).login()  # a session of its own, in Redis only
        else:
            print("redis       /usr/bin/redis-server is missing: no Redis column", file=sys.stderr)
        token_endpoint = f"{server.issuer}/protocol/openid-connect/token"

        t0 = time.perf_counter()
        auth.login()
        login_s = time.perf_counter() - t0
        cold, warm = refresh_round_trips(server, cache, token_endpoint, args.rtt_samples)
        auth.login()  # the round trips rotated the refresh token away from the cache's copy
        rtt_cold = _common.median(cold)
        rtt_warm = _common.median(warm)
        print(f"login       one device login (programmatic approval, 1 s poll interval): {login_s:.2f} s")
        print(
            f"refresh     one refresh alone, Authlib OAuth2Session, {args.rtt_samples} samples each: "
            f"new connection median {rtt_cold:.1f} ms (p95 {_common.percentile(cold, 95):.1f}); "
            f"kept-alive connection median {rtt_warm:.1f} ms (p95 {_common.percentile(warm, 95):.1f})"
        )
        print()

        rounds: dict[tuple[str, int], list[Round]] = {}
        for rep in range(args.reps):
            for n in args.n:
                make_stale(cache, server)
                da = run_round(ctx, "deviceauth", n, server, cache, token_endpoint)
                if redis_url is not None:
                    make_stale_in_redis(redis_url, server)
                    rounds.setdefault(("redis", n), []).append(
                        run_round(ctx, "redis", n, server, redis_url, token_endpoint)
                    )
                naive = run_round(ctx, "naive", n, server, cache, token_endpoint)
                auth.login()  # reuse detection has probably revoked the grant: start the next round clean
                rounds.setdefault(("deviceauth", n), []).append(da)
                rounds.setdefault(("naive", n), []).append(naive)
                print(
                    f"  rep {rep + 1} N={n}: deviceauth {da.refreshes} refresh(es), last {da.last_done_ms:.0f} ms; "
                    f"naive {naive.refreshes} refreshes, {naive.invalid_grant} invalid_grant, "
                    f"{naive.usable} usable",
                    file=sys.stderr,
                    flush=True,
                )

    def col(mode: str, n: int, attr: str, digits: int = 0) -> str:
        if (mode, n) not in rounds:
            return "-"
        return _fmt([float(getattr(r, attr)) for r in rounds[(mode, n)]], digits)

    print("## Herd: N processes, one stale token")
    print()
    _common.print_table(
        [
            "N",
            "deviceauth refreshes",
            "deviceauth invalid_grant",
            "deviceauth failures",
            "deviceauth last-done ms",
            "redis refreshes",
            "redis invalid_grant",
            "redis failures",
            "redis last-done ms",
            "naive refreshes",
            "naive invalid_grant",
            "naive usable",
            "naive last-done ms",
        ],
        [
            [
                n,
                col("deviceauth", n, "refreshes"),
                col("deviceauth", n, "invalid_grant"),
                col("deviceauth", n, "failures"),
                col("deviceauth", n, "last_done_ms"),
                col("redis", n, "refreshes"),
                col("redis", n, "invalid_grant"),
                col("redis", n, "failures"),
                col("redis", n, "last_done_ms"),
                col("naive", n, "refreshes"),
                col("naive", n, "invalid_grant"),
                f"{col('naive', n, 'usable')} of {n}",
                col("naive", n, "last_done_ms"),
            ]
            for n in args.n
        ],
    )
    print()
    print("## Details (same rounds)")
    print()
    _common.print_table(
        [
            "N",
            "deviceauth median-done ms",
            "deviceauth last-woke ms",
            "deviceauth cache written ms",
            "deviceauth usable",
            "deviceauth distinct tokens",
            "deviceauth cpu ms (all N)",
            "redis median-done ms",
            "redis last-woke ms",
            "redis token obtained ms",
            "redis usable",
            "redis cpu ms (all N)",
            "naive failures",
            "naive median-done ms",
            "naive distinct tokens",
            "other server requests",
        ],
        [
            [
                n,
                col("deviceauth", n, "median_done_ms"),
                col("deviceauth", n, "last_woke_ms"),
                col("deviceauth", n, "written_ms"),
                f"{col('deviceauth', n, 'usable')} of {n}",
                col("deviceauth", n, "distinct_tokens"),
                col("deviceauth", n, "cpu_ms"),
                col("redis", n, "median_done_ms"),
                col("redis", n, "last_woke_ms"),
                col("redis", n, "written_ms"),
                f"{col('redis', n, 'usable')} of {n}",
                col("redis", n, "cpu_ms"),
                col("naive", n, "failures"),
                col("naive", n, "median_done_ms"),
                col("naive", n, "distinct_tokens"),
                "; ".join(
                    sorted(
                        {
                            f"{k}={v}"
                            for mode in ("deviceauth", "redis")
                            for r in rounds.get((mode, n), [])
                            for k, v in r.other_token_requests.items()
                        }
                    )
                )
                or "none",
            ]
            for n in args.n
        ],
    )
    errors = sorted({e for rs in rounds.values() for r in rs for e in r.errors})
    if errors:
        print()
        print("errors seen: " + " | ".join(f"{e}" for e in errors))
    print()
    biggest = max(args.n)
    last = _common.median([r.last_done_ms for r in rounds[("deviceauth", biggest)]])
    for label, rtt in (("new-connection", rtt_cold), ("kept-alive", rtt_warm)):
        budget = rtt + 100
        verdict = "within" if last <= budget else "NOT within"
        print(
            f"target      N={biggest}: every process done {last:.0f} ms after release (median of {args.reps}); "
            f"one {label} refresh + 100 ms = {budget:.0f} ms: {verdict}"
        )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"total       {time.monotonic() - started:.0f} s; load avg at end {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
