"""Many machines, literally: worker processes in network namespaces of their own, reaching Redis
over a veth link at a test address, sharing nothing else (no files, no HOME, no loopback).

Each namespace gets a veth pair (host side 10.231.K.1, namespace side 10.231.K.2). Redis listens
on the host side addresses. The test authorization server stays on the host's 127.0.0.1; a
forwarder inside each namespace makes it reachable there as 127.0.0.1 too (deviceauth sends
tokens over plain http only to loopback), through a host-side forwarder on the veth address.
Needs root and ``ip netns``; skipped otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis_server

from deviceauth import DeviceAuth
from oidc_server import ACCESS_TTL, Approver, OidcServer

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
NAMESPACES = 3
PER_NAMESPACE = 2
TAG = f"da{os.getpid() % 100000}"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _can_make_namespaces() -> str | None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "needs root and iproute2 (ip netns)"
    try:
        _ip("netns", "add", f"{TAG}probe")
        _ip("netns", "del", f"{TAG}probe")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return f"cannot create network namespaces here: {exc}"
    return None


@contextlib.contextmanager
def _namespaces(count: int) -> Iterator[list[tuple[str, str]]]:
    """(namespace name, host-side address) for each; removed afterwards (with their veth pairs)."""
    made: list[tuple[str, str]] = []
    try:
        for k in range(1, count + 1):
            ns, host_if, ns_if = f"{TAG}n{k}", f"{TAG}h{k}", f"{TAG}v{k}"
            host_ip, ns_ip = f"10.231.{k}.1", f"10.231.{k}.2"
            _ip("netns", "add", ns)
            made.append((ns, host_ip))
            _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            _ip("link", "set", ns_if, "netns", ns)
            _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
            _ip("link", "set", host_if, "up")
            _ip("-n", ns, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
            _ip("-n", ns, "link", "set", ns_if, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield made
    finally:
        for ns, _ in made:
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                _ip("netns", "del", ns)


@contextlib.contextmanager
def _forwarder(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_workers_in_separate_network_namespaces_share_one_refresh_per_expiry(tmp_path: Path) -> None:
    if (reason := _can_make_namespaces()) is not None:
        pytest.skip(reason)
    if not redis_server.available():
        pytest.skip(f"{redis_server.REDIS_SERVER} is missing")
    with contextlib.ExitStack() as stack:
        spaces = stack.enter_context(_namespaces(NAMESPACES))
        srv = stack.enter_context(redis_server.RedisServer(bind=("127.0.0.1", *(ip for _, ip in spaces))))
        oidc = stack.enter_context(OidcServer(mode="keycloak", access_ttl=ACCESS_TTL))
        port = int(oidc.issuer.split(":")[2].split("/")[0])
        for ns, host_ip in spaces:
            forward = [sys.executable, str(HERE / "tcp_forward.py")]
            stack.enter_context(_forwarder([*forward, host_ip, str(port), "127.0.0.1", str(port)]))
            stack.enter_context(
                _forwarder(["ip", "netns", "exec", ns, *forward, "127.0.0.1", str(port), host_ip, str(port)])
            )
        # Isolated for real: inside a namespace, the host's loopback (where Redis also listens) is not there.
        probe = f"import socket; socket.create_connection(('127.0.0.1', {srv.port}), timeout=2)"
        isolated = subprocess.run(["ip", "netns", "exec", spaces[0][0], sys.executable, "-c", probe],
                                  capture_output=True, timeout=30, check=False)  # fmt: skip
        assert isolated.returncode != 0 and b"ConnectionRefused" in isolated.stderr
        # One login on the "head node" (the host), through the host-side address of the first link.
        head_url = srv.url(host=spaces[0][1]) + "?allow_plaintext=1"  # a private test network
        options = {"scope": "openid", "open_browser": False}
        first = DeviceAuth(oidc.issuer, "client-tools", cache=head_url, interactive=True, prompt=Approver(oidc),
                           **options).get_token()  # fmt: skip
        oidc.reset_stats()
        stop = tmp_path / "stop"
        workers = []
        for k, (ns, host_ip) in enumerate(spaces):
            auth = DeviceAuth(
                oidc.issuer,
                "client-tools",
                cache=srv.url(host=host_ip) + "?allow_plaintext=1",
                interactive=False,
                **options,
            )
            pickled = tmp_path / f"auth-{k}.pickle"
            pickled.write_bytes(pickle.dumps(auth))
            for j in range(PER_NAMESPACE):
                result = tmp_path / f"result-{k}-{j}.json"
                home = tmp_path / f"home-{k}-{j}"
                argv = ["ip", "netns", "exec", ns, sys.executable, str(HERE / "netns_worker.py"),
                        str(pickled), oidc.api_url(), str(stop), str(result), str(home)]  # fmt: skip
                workers.append((subprocess.Popen(argv, stdin=subprocess.DEVNULL), result))
        try:
            deadline = time.monotonic() + 60
            while oidc.stats()["token"].get("refresh_token", 0) < 3 and time.monotonic() < deadline:
                if any(p.poll() is not None for p, _ in workers):
                    break
                time.sleep(0.1)
            time.sleep(ACCESS_TTL / 2)
        finally:
            stop.touch()
            for p, _ in workers:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        results = [json.loads(result.read_text()) for _, result in workers]
        stats = oidc.stats()
    refreshes = stats["token"].get("refresh_token", 0)
    tokens = set().union(*(set(r["tokens"]) for r in results))
    assert sum(r["failed"] for r in results) == 0, [e for r in results for e in r["errors"]][:5]
    assert all(r["ok"] > 0 for r in results)
    assert not any(r["cache_dir_used"] for r in results)  # no file cache anywhere: only Redis
    assert stats["token_errors"].get("invalid_grant", 0) == 0
    assert stats["device_authorization"] == 0
    assert refreshes >= 3
    assert refreshes == len(tokens - {hashlib.sha256(first.encode()).hexdigest()})
