"""``deviceauth demo`` and ``deviceauth serve`` as a person runs them (real subprocesses)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

ENV = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}


def test_demo_with_auto_approve_end_to_end() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "deviceauth", "demo", "--auto-approve"],
        capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL, env=ENV, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"enter the code [B-Z]{4}-[B-Z]{4}", result.stderr)  # the normal prompt was shown
    summary = re.search(
        r"The server saw: (\d+) login, (\d+) refreshes, (\d+) API calls accepted, (\d+) rejected", result.stdout
    )
    assert summary, result.stdout
    logins, refreshes, accepted, rejected = map(int, summary.groups())
    assert (logins, rejected) == (1, 0)
    assert refreshes >= 2  # several expiries crossed without asking again
    assert accepted == 15  # five rounds of requests, HTTPX and urllib3
    for library in ("requests", "HTTPX", "urllib3"):
        assert f"{library} as alice" in result.stdout
    print(f"\ndeviceauth demo --auto-approve took {elapsed:.1f} s")


def _serve(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "deviceauth", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=ENV,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: dict[str, str] = {}
    for _ in range(20):  # the banner is a dozen lines; bounded in case it never comes
        line = proc.stdout.readline()
        if match := re.match(r"\s+([a-z ]+):\s+(\S+)", line):
            seen[match.group(1).strip()] = match.group(2)
        if line.startswith("Press Ctrl-C") or not line:
            break
    return proc, seen


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("deviceauth serve did not stop on Ctrl-C")
    return proc.returncode, err


def test_serve_prints_where_it_is_and_stops_on_ctrl_c() -> None:
    proc, seen = _serve("--mode", "keycloak", "--access-ttl", "30")
    try:
        issuer = seen["issuer"]
        assert issuer.endswith("/realms/rrap")
        assert seen["public client"] == "client-tools"
        assert seen["confidential"] == "confidential-client"
        with requests.Session() as http:
            http.trust_env = False
            doc = http.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
            assert doc["device_authorization_endpoint"].startswith(issuer)
            base = issuer.split("/realms/")[0]
            assert http.get(f"{base}/__test/stats", timeout=10).status_code == 404  # off for humans
            assert http.get(seen["verification page"], timeout=10).status_code == 200
    finally:
        code, err = _stop(proc)
    assert code == 0
    assert "stopped" in err
    assert "Traceback" not in err


def test_serve_with_control_and_refusing_a_remote_host() -> None:
    proc, seen = _serve("--control", "--mode", "plain")
    try:
        with requests.Session() as http:
            http.trust_env = False
            assert http.get(f"{seen['issuer']}/__test/stats", timeout=10).status_code == 200
    finally:
        _stop(proc)
    refused = subprocess.run(
        [sys.executable, "-m", "deviceauth", "serve", "--host", "0.0.0.0"],  # noqa: S104 (refused, never bound)
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "allow_remote" in refused.stderr


def test_demo_waits_for_a_person_on_a_terminal() -> None:
    """On a TTY the demo approves nothing itself: a 'person' does it on the verification page."""
    import pty
    import select

    main, child_end = pty.openpty()
    env = {**ENV, "BROWSER": "true", "DISPLAY": "", "TERM": "dumb"}  # never open a real browser here
    proc = subprocess.Popen(
        [sys.executable, "-m", "deviceauth", "demo"], stdin=child_end, stdout=child_end, stderr=child_end, env=env
    )
    os.close(child_end)
    output = b""
    deadline = time.monotonic() + 60
    try:
        while (match := re.search(rb"open (http://\S+/device) and enter the code ([B-Z]{4}-[B-Z]{4})", output)) is None:
            assert time.monotonic() < deadline, output.decode(errors="replace")
            if select.select([main], [], [], 1)[0]:
                output += os.read(main, 4096)
        page, code = match.group(1).decode(), match.group(2).decode()
        time.sleep(1.5)
        assert b"The server saw" not in output  # still waiting: nobody approved yet
        with requests.Session() as http:
            http.trust_env = False
            review = http.get(page, params={"user_code": code}, timeout=10).text
            token = re.search(r'name=form_token value="([^"]+)"', review)
            assert token, review
            done = http.post(page, data={"user_code": code, "form_token": token.group(1), "username": "pat",
                                         "decision": "approve"}, timeout=10)  # fmt: skip
            assert "Signed in as pat" in done.text
        while proc.poll() is None or select.select([main], [], [], 0)[0]:
            assert time.monotonic() < deadline + 30, output.decode(errors="replace")
            if select.select([main], [], [], 1)[0]:
                try:
                    output += os.read(main, 4096)
                except OSError:  # the child closed the terminal
                    break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        os.close(main)
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "requests as pat" in text
    assert re.search(r"The server saw: 1 login, \d+ refreshes, 15 API calls accepted, 0 rejected", text), text
