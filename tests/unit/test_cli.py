"""``deviceauth login | status | token | logout``: one line on stderr per failure, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import responses
from deviceauth_fakes import (
    CLIENT_ID,
    DISCOVERY_URL,
    ISSUER,
    REVOCATION_ENDPOINT,
    FakeAuthServer,
    cached_token,
    make_token,
    metadata,
    write_cache,
)

from deviceauth import DeviceAuth, _prompt
from deviceauth._cli import main

ME = (ISSUER, CLIENT_ID, None)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DEVICEAUTH_ISSUER", "DEVICEAUTH_CLIENT_ID", "DEVICEAUTH_SCOPE", "DEVICEAUTH_OFFLINE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # Never the real ~/.cache, whatever a test forgets to pass.
    monkeypatch.setenv("DEVICEAUTH_CACHE", str(tmp_path / "default" / ".tokens.json"))
    monkeypatch.setattr(_prompt, "is_interactive", lambda: False)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def args(cache_path: Path, *rest: str) -> list[str]:
    return [*rest, "--issuer", ISSUER, "--client-id", CLIENT_ID, "--cache", str(cache_path)]


@pytest.mark.parametrize("command", ["token", "login", "logout"])
def test_missing_issuer_is_a_usage_error(
    command: str, cache_path: Path, capsys: pytest.CaptureFixture[str], mocked: responses.RequestsMock
) -> None:
    assert main([command, "--client-id", CLIENT_ID, "--cache", str(cache_path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "--issuer" in one_line(err)
    assert len(mocked.calls) == 0


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert one_line(capsys.readouterr().err).startswith("deviceauth: error:")


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--bogus"]) == 2
    assert "--bogus" in one_line(capsys.readouterr().err)


def test_status_lists_identities_and_expiry_without_tokens(
    cache_path: Path, capsys: pytest.CaptureFixture[str], mocked: responses.RequestsMock
) -> None:
    now = time.time()
    mine = make_token(now, lifetime=3600, refresh_expires_at=now + 7200)
    other = make_token(now - 7200, lifetime=300, refresh=False)
    write_cache(cache_path, {ME: mine, (ISSUER, "other-client", "openid"): other})
    assert main(["status", "--cache", str(cache_path)]) == 0
    out, err = capsys.readouterr()
    assert str(cache_path) in out
    assert f"{ISSUER}  client={CLIENT_ID}" in out
    assert "client=other-client scope=openid" in out
    assert "access token valid until" in out
    assert "access token expired until" in out
    assert "refreshable until" in out
    assert "no refresh token" in out
    assert time.strftime("%Y-%m-%d", time.localtime(mine.expires_at)) in out
    for token in (mine, other):
        for secret in (token.access_token, token.refresh_token, token.id_token):
            if secret:
                assert secret not in out + err
    assert len(mocked.calls) == 0


def test_status_filters_by_client(cache_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_cache(cache_path, {ME: make_token(time.time()), (ISSUER, "other-client", None): make_token(time.time())})
    assert main(["status", "--client-id", "other-client", "--cache", str(cache_path)]) == 0
    out = capsys.readouterr().out
    assert "other-client" in out
    assert f"client={CLIENT_ID}\n" not in out


def test_status_with_an_empty_cache(cache_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--cache", str(cache_path)]) == 0
    assert "No cached identities" in one_line(capsys.readouterr().err)
    assert main(["status", "--issuer", ISSUER, "--cache", str(cache_path)]) == 1


def test_status_uses_deviceauth_cache_env(
    cache_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cache(cache_path, {ME: make_token(time.time())})
    monkeypatch.setenv("DEVICEAUTH_CACHE", str(cache_path))
    assert main(["status"]) == 0
    assert str(cache_path) in capsys.readouterr().out


def test_token_prints_the_cached_access_token_without_network(
    cache_path: Path, capsys: pytest.CaptureFixture[str], mocked: responses.RequestsMock
) -> None:
    token = make_token(time.time(), lifetime=3600)
    write_cache(cache_path, {ME: token})
    assert main(args(cache_path, "token")) == 0
    out, err = capsys.readouterr()
    assert out == token.access_token + "\n"
    assert err == ""
    assert len(mocked.calls) == 0


def test_environment_variables_are_honoured(
    cache_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    mocked: responses.RequestsMock,
) -> None:
    token = make_token(time.time(), lifetime=3600)
    write_cache(cache_path, {(ISSUER, CLIENT_ID, "openid"): token})
    monkeypatch.setenv("DEVICEAUTH_ISSUER", ISSUER)
    monkeypatch.setenv("DEVICEAUTH_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("DEVICEAUTH_SCOPE", "openid")
    monkeypatch.setenv("DEVICEAUTH_CACHE", str(cache_path))
    assert main(["token"]) == 0
    assert capsys.readouterr().out.strip() == token.access_token


def test_token_without_a_usable_token_names_the_login_command(
    cache_path: Path, capsys: pytest.CaptureFixture[str], mocked: responses.RequestsMock
) -> None:
    assert main(args(cache_path, "token")) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "deviceauth login --issuer" in one_line(err)


def test_logout_removes_the_identity(
    server: FakeAuthServer, cache_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = make_token(time.time())
    other = make_token(time.time())
    write_cache(cache_path, {ME: token, (ISSUER, "other-client", None): other}, server_metadata=metadata())
    assert main(args(cache_path, "logout")) == 0
    assert "Logged out" in one_line(capsys.readouterr().err)
    assert cached_token(cache_path) is None
    assert {form["token"] for form in server.revocations} == {token.access_token, token.refresh_token}
    assert main(args(cache_path, "logout", "--no-revoke")) == 0
    assert "Nothing to log out" in one_line(capsys.readouterr().err)


def test_logout_no_revoke_makes_no_request(
    cache_path: Path, capsys: pytest.CaptureFixture[str], mocked: responses.RequestsMock
) -> None:
    write_cache(cache_path, {ME: make_token(time.time())})
    assert main(args(cache_path, "logout", "--no-revoke")) == 0
    assert cached_token(cache_path) is None
    assert len(mocked.calls) == 0


def test_unreachable_server_is_one_line_and_exit_1(
    cache_path: Path, capsys: pytest.CaptureFixture[str], mocked: responses.RequestsMock
) -> None:
    mocked.add(responses.GET, DISCOVERY_URL, body=requests.ConnectionError("connection refused"))
    assert main(args(cache_path, "login", "--no-browser")) == 1
    _out, err = capsys.readouterr()
    line = one_line(err)
    assert line.startswith("deviceauth: error:")
    assert "cannot reach" in line


def test_login_prints_where_it_logged_in(
    server: FakeAuthServer, cache_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server.device(interval=1)
    body = server.grant()
    slept: list[float] = []
    # The CLI builds its DeviceAuth with the default sleep; replace that default, not time.sleep.
    defaults = DeviceAuth.__init__.__kwdefaults__
    assert defaults is not None
    monkeypatch.setitem(defaults, "sleep", slept.append)
    assert main(args(cache_path, "login", "--no-browser")) == 0
    assert slept == [1]
    out, err = capsys.readouterr()
    assert out == ""
    assert "WDJB-MJHT" in err
    assert f"Logged in to {ISSUER} as client {CLIENT_ID}" in err
    assert body["access_token"] not in err
    stored = cached_token(cache_path)
    assert stored is not None
    assert stored.access_token == body["access_token"]


def test_keyboard_interrupt_exits_130(
    cache_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: DeviceAuth) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(DeviceAuth, "login", interrupted)
    assert main(args(cache_path, "login")) == 130
    assert one_line(capsys.readouterr().err) == "deviceauth: interrupted"


# -- hostile input never prints a traceback ---------------------------------------------------------


def _write_raw_entry(cache_path: Path, token: object) -> None:
    # The store's own API refuses to write such entries; this is what a damaged or planted file holds.
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    key = f"{ISSUER} {CLIENT_ID}"
    entry = {"issuer": ISSUER, "client_id": CLIENT_ID, "scope": None, "token": token}
    cache_path.write_text(json.dumps({"version": 1, "identities": {key: entry}, "servers": {}}))


@pytest.mark.parametrize(
    "token",
    [
        None,
        {},
        {"access_token": "x"},
        {"access_token": "x", "expires_at": "abc"},
        {"access_token": "x", "expires_at": 1e308},
        {"access_token": "x", "expires_at": -1e308},
        {"access_token": "x", "expires_at": 1e308, "refresh_token": "r", "refresh_expires_at": 1e308},
        {"access_token": ["x"], "expires_at": 1},
        {"access_token": "x", "expires_at": 1, "refresh_token": 7},
        {"access_token": "a\x1b]8;;http://evil\x07b", "expires_at": 1},
    ],
)
@pytest.mark.parametrize("command", ["status", "token", "logout"])
def test_a_damaged_cache_entry_never_prints_a_traceback(
    cache_path: Path, capsys: pytest.CaptureFixture[str], mocked: responses.RequestsMock, token: object, command: str
) -> None:
    _write_raw_entry(cache_path, token)
    code = main(args(cache_path, command, *(["--no-revoke"] if command == "logout" else [])))
    out, err = capsys.readouterr()
    assert code in (0, 1)
    assert "Traceback" not in out + err
    assert "\x1b" not in out + err
    if err:
        one_line(err)


def test_status_ignores_an_impossible_expiry(cache_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_raw_entry(cache_path, {"access_token": "x", "expires_at": 1e308, "obtained_at": 0})
    assert main(["status", "--cache", str(cache_path)]) == 0
    assert "No cached identities" in one_line(capsys.readouterr().err)


def test_status_shows_stored_names_without_control_characters(
    cache_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cache(cache_path, {(ISSUER, "evil\x1b[2Jclient", None): make_token(time.time())})
    assert main(["status", "--cache", str(cache_path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "evil?[2Jclient" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["token", "--issuer", "javascript:alert(1)", "--client-id", "c"],
        ["token", "--issuer", "https://a.example/x?y#z", "--client-id", "c"],
        ["token", "--issuer", ISSUER, "--client-id", "a\nb"],
        ["login", "--issuer", ISSUER, "--client-id", CLIENT_ID, "--scope", ""],
        ["status", "--cache", "/dev/null/x/.tokens.json"],
    ],
)
def test_odd_arguments_are_one_line_without_a_traceback(
    argv: list[str], capsys: pytest.CaptureFixture[str], mocked: responses.RequestsMock
) -> None:
    code = main(argv)
    _out, err = capsys.readouterr()
    assert code in (0, 1, 2)
    if code:
        assert one_line(err).startswith("deviceauth:")


def test_an_unexpected_internal_error_is_one_line_without_its_message(
    cache_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: DeviceAuth) -> str:
        raise RuntimeError("at-SECRET-in-a-message")

    monkeypatch.setattr(DeviceAuth, "get_token", broken)
    assert main(args(cache_path, "token")) == 1
    line = one_line(capsys.readouterr().err)
    assert "RuntimeError" in line
    assert "SECRET" not in line


@pytest.mark.parametrize("position", ["before", "after"])
def test_verbose_works_before_and_after_the_command(
    cache_path: Path, capsys: pytest.CaptureFixture[str], position: str
) -> None:
    argv = (
        ["-v", "status", "--cache", str(cache_path)]
        if position == "before"
        else ["status", "-v", "--cache", str(cache_path)]
    )
    assert main(argv) == 0
    assert "No cached identities" in capsys.readouterr().err


def test_logout_reports_a_failed_revocation_honestly(
    server: FakeAuthServer, cache_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_cache(cache_path, {ME: make_token(time.time())}, server_metadata=metadata())
    server.mock.replace("POST", REVOCATION_ENDPOINT, status=401)
    assert main(args(cache_path, "logout")) == 1
    line = one_line(capsys.readouterr().err)
    assert "did not confirm the revocation" in line
    assert cached_token(cache_path) is None


def test_warm_token_loads_no_http_library(cache_path: Path) -> None:
    token = make_token(time.time(), lifetime=3600)
    write_cache(cache_path, {ME: token})
    code = (
        "import sys\nfrom deviceauth._cli import main\n"
        f"rc = main({args(cache_path, 'token')!r})\n"
        "heavy = sorted(m for m in ('requests', 'authlib', 'httpx', 'urllib3', 'filelock') if m in sys.modules)\n"
        "print(rc, heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == token.access_token
    assert result.stderr.strip() == "0 []"
