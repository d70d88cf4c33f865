"""``deviceauth.provena`` (alias ``deviceauth.compat``): a Provena notebook, changed only in its import, works.

Against the oidc-provider test server; tests/keycloak/test_kc_provena.py runs the same code on a real Keycloak."""

from __future__ import annotations

import base64
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

import deviceauth.compat
import deviceauth.provena
from deviceauth import DeviceAuth, LoginRequired
from deviceauth.provena import AuthFlow, DeviceFlowManager, Stage, StageTokens, Tokens
from oidc_server import OidcServer

if TYPE_CHECKING:  # conftest is a fixture module: importing it at run time is ambiguous
    from conftest import Approver

REFRESH_GRANT = "refresh_token"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def test_notebook_style_use_works_across_expiries(server: OidcServer, cache_file: Path, approver: Approver) -> None:
    manager = DeviceFlowManager(
        stage="TEST",
        keycloak_endpoint=server.issuer,
        local_storage_location=str(cache_file),
        scopes=["openid"],
        prompt=approver,
        interactive=True,
    )
    assert server.stats()["device_authorization"] + server.stats()["discovery"] == 0  # constructor: no I/O
    assert manager.cache_location is not None
    assert not manager.cache_location.exists()

    auth = manager.get_auth()  # kept for hours, as notebooks do; it must not go stale
    seen: set[str] = set()
    calls = 0
    end = time.monotonic() + 11.0
    while time.monotonic() < end and len(seen) <= 3 and calls < 200:
        response = requests.get(server.api_url("items"), auth=auth, timeout=10)
        assert response.status_code == 200, response.text
        seen.add(response.json()["token_sha256"])
        calls += 1
        time.sleep(0.1)

    stats = server.stats()
    assert len(approver.codes) == 1
    assert stats["device_authorization"] == 1
    assert stats["discovery"] == 0  # Keycloak's fixed endpoint paths, as the original used
    assert stats["token"][DEVICE_GRANT] == 1
    assert stats["token"][REFRESH_GRANT] == len(seen) - 1 >= 3
    assert stats["api"] == {"ok": calls, "unauthorized": 0, "redirect": 0}
    assert stats["token_errors"].get("invalid_grant", 0) == 0
    assert manager.get_token() == auth.get_token()
    assert manager.cache_location.stat().st_mode & 0o777 == 0o600


def test_get_auth_is_the_device_auth_and_works_with_httpx(
    server: OidcServer, cache_file: Path, approver: Approver
) -> None:
    import httpx

    manager = DeviceFlowManager(
        "TEST",
        server.issuer,
        local_storage_location=str(cache_file),
        scopes=["openid"],
        prompt=approver,
        interactive=True,
    )
    assert isinstance(manager.get_auth(), DeviceAuth)
    assert manager.get_auth() is manager.device_auth
    with httpx.Client(auth=manager.device_auth.httpx, trust_env=False) as client:
        assert client.get(server.api_url()).status_code == 200


def test_directory_as_storage_location_leaves_the_old_file_alone(
    server: OidcServer, tmp_path: Path, approver: Approver
) -> None:
    legacy = {"stages": {"TEST": {"access_token": "old", "refresh_token": "old"}, "PROD": None}}
    old_file = tmp_path / ".tokens.json"
    old_file.write_text(json.dumps(legacy))
    before = old_file.read_bytes()
    manager = DeviceFlowManager(
        "TEST",
        server.issuer,
        local_storage_location=str(tmp_path),
        scopes=["openid"],
        prompt=approver,
        interactive=True,
    )
    assert manager.token_storage_location == old_file
    assert manager.cache_location == tmp_path / ".tokens.deviceauth.json"
    requests.get(server.api_url(), auth=manager.get_auth(), timeout=10).raise_for_status()
    assert old_file.read_bytes() == before  # an old mdsisclienttools still finds its file as it left it
    assert len(json.loads(manager.cache_location.read_text())["identities"]) == 1
    # "old" is no JWT from this issuer: it is never sent anywhere; a normal login happened instead.
    assert server.stats()["token"].get(REFRESH_GRANT, 0) == 0
    assert len(approver.codes) == 1


def test_side_by_side_with_the_old_tool_in_one_directory(
    server: OidcServer, tmp_path: Path, approver: Approver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    options = {"local_storage_location": ".tokens.json", "scopes": ["openid"], "prompt": approver}
    DeviceFlowManager("PROD", server.issuer, **options).get_token()  # type: ignore[arg-type]
    # The old tool then rewrites its own file, as it does on every login and refresh.
    Path(".tokens.json").write_text(StageTokens({Stage.PROD: Tokens("a", "b")}).json(exclude_none=True))
    DeviceFlowManager("PROD", server.issuer, **options).get_token()  # type: ignore[arg-type]
    assert len(approver.codes) == 1  # no extra login: neither file clobbers the other
    assert json.loads(Path(".tokens.json").read_text()) == {
        "stages": {"PROD": {"access_token": "a", "refresh_token": "b"}}
    }


def test_prompts_and_waits_without_a_terminal_like_the_original(
    server: OidcServer, cache_file: Path, approver: Approver
) -> None:
    assert not sys.stdin.isatty()  # pytest's stdin: no terminal, as in a plain script
    manager = DeviceFlowManager("TEST", server.issuer, local_storage_location=cache_file, prompt=approver)
    assert manager.get_token()
    assert len(approver.codes) == 1
    refusing = DeviceFlowManager(
        "TEST", server.issuer, local_storage_location=cache_file, scopes=["email"], interactive=False
    )
    with pytest.raises(LoginRequired):
        refusing.get_token()


def test_the_names_real_code_imports() -> None:
    for name in deviceauth.provena.__all__:
        assert getattr(deviceauth.compat, name) is getattr(deviceauth.provena, name)
    from deviceauth.provena import LOCAL_STORAGE_DEFAULT, BearerAuth, StorageType

    assert LOCAL_STORAGE_DEFAULT == ".tokens.json"
    assert StorageType("FILE") is StorageType.FILE
    prepared = requests.Request("GET", "https://api.example.invalid/", auth=BearerAuth("t0k3n")).prepare()
    assert prepared.headers["Authorization"] == "Bearer t0k3n"
    assert "t0k3n" not in repr(BearerAuth("t0k3n"))
    parsed = StageTokens.parse_obj({"stages": {"PROD": {"access_token": "a"}, "DEV": None, "NOPE": {}}})
    assert parsed.stages == {Stage.PROD: Tokens("a", None), Stage.DEV: None}
    assert json.loads(parsed.json(exclude_none=True)) == {"stages": {"PROD": {"access_token": "a"}}}


def test_force_token_refresh_logs_in_again_at_first_use(
    server: OidcServer, cache_file: Path, approver: Approver
) -> None:
    options = {"local_storage_location": cache_file, "scopes": ["openid"], "prompt": approver, "interactive": True}
    DeviceFlowManager("TEST", server.issuer, **options).get_token()  # type: ignore[arg-type]
    forced = DeviceFlowManager("TEST", server.issuer, force_token_refresh=True, **options)  # type: ignore[arg-type]
    assert len(approver.codes) == 1  # not in the constructor
    forced.get_token()
    forced.get_token()
    assert len(approver.codes) == 2


def test_silent_sends_the_code_to_logging(
    server: OidcServer, cache_file: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    manager = DeviceFlowManager(
        "TEST", server.issuer, local_storage_location=cache_file, scopes=["openid"], silent=True, interactive=True
    )
    approved: list[str] = []

    class Approve(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            code = str(record.args[1]) if isinstance(record.args, tuple) else ""
            server.approve(code)
            approved.append(code)

    handler = Approve(level=logging.WARNING)
    logging.getLogger("deviceauth.provena").addHandler(handler)
    try:
        with caplog.at_level(logging.WARNING, logger="deviceauth.provena"):
            manager.get_token()
    finally:
        logging.getLogger("deviceauth.provena").removeHandler(handler)
    assert len(approved) == 1
    assert approved[0] in caplog.text
    captured = capsys.readouterr()
    assert approved[0] not in captured.out + captured.err  # nothing printed


def test_offline_flow_never_prompts(server: OidcServer, tmp_path: Path, cache_file: Path) -> None:
    setup = DeviceAuth(
        server.issuer,
        "client-tools",
        scope="openid offline_access",
        cache=tmp_path / "setup" / ".tokens.json",
        prompt=lambda code: server.approve(code.user_code),
        interactive=True,
    )
    setup.get_token()
    cached = setup.cached_token()
    assert cached is not None
    assert cached.refresh_token
    server.reset_stats()

    manager = DeviceFlowManager(
        "PROD",
        server.issuer,
        auth_flow=AuthFlow.OFFLINE,
        offline_token=cached.refresh_token,
        local_storage_location=cache_file,
        scopes=["openid", "offline_access"],
        prompt=lambda code: pytest.fail("the offline flow must not prompt"),
    )
    requests.get(server.api_url(), auth=manager.get_auth(), timeout=10).raise_for_status()
    assert server.stats()["device_authorization"] == 0
    assert manager.cache_location is not None
    assert cached.refresh_token not in manager.cache_location.read_text()


def test_offline_flow_with_a_bad_token_raises_login_required(server: OidcServer, cache_file: Path) -> None:
    manager = DeviceFlowManager(
        "PROD",
        server.issuer,
        auth_flow="OFFLINE",
        offline_token="not-an-offline-token",
        local_storage_location=cache_file,
        scopes=["openid"],
    )
    with pytest.raises(LoginRequired):
        manager.get_token()
    assert server.stats()["device_authorization"] == 0


def test_constructor_validates_like_the_original(cache_file: Path) -> None:
    issuer = "https://auth.example.invalid/auth/realms/rrap"
    with pytest.raises(ValueError, match="Stage"):
        DeviceFlowManager("NOPE", issuer)
    with pytest.raises(ValueError, match="offline token"):
        DeviceFlowManager("TEST", issuer, auth_flow=AuthFlow.OFFLINE)
    with pytest.raises(ValueError, match="DEVICE"):
        DeviceFlowManager("TEST", issuer, offline_token="x")
    with pytest.raises(ValueError, match="local_storage_object"):
        DeviceFlowManager("TEST", issuer, local_storage_object={})
    manager = DeviceFlowManager("prod", issuer, local_storage_location=cache_file)  # no network: .invalid host
    assert manager.stage is Stage.PROD
    assert manager.device_auth.scope is None
    assert repr(manager).startswith("DeviceFlowManager(stage='PROD'")


def _jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def test_where_the_old_file_and_the_new_cache_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = "https://auth.example.invalid/auth/realms/rrap"
    monkeypatch.chdir(tmp_path)
    default = DeviceFlowManager("PROD", issuer)
    assert default.token_storage_location == tmp_path / ".tokens.json"  # where the old tool wrote
    assert default.cache_location is None  # deviceauth's default cache, shared by every directory
    named = DeviceFlowManager("PROD", issuer, local_storage_location="creds/tokens.json")
    assert named.token_storage_location == tmp_path / "creds" / "tokens.json"
    assert named.cache_location == tmp_path / "creds" / "tokens.deviceauth.json"
    assert not (tmp_path / "creds").exists()  # nothing created before first use


@pytest.mark.parametrize("interactive", [False, True], ids=["unattended", "interactive"])
def test_an_expired_old_login_falls_back_to_a_normal_login(
    server: OidcServer, tmp_path: Path, approver: Approver, interactive: bool
) -> None:
    old_file = tmp_path / ".tokens.json"
    stale = _jwt({"iss": server.issuer, "typ": "Refresh"})  # issued here (by its claim) but not valid
    foreign = _jwt({"iss": "https://elsewhere.invalid/realms/rrap"})
    old = {
        "stages": {
            "PROD": {"access_token": "a", "refresh_token": stale},
            "DEV": {"access_token": "a", "refresh_token": foreign},
        }
    }
    old_file.write_text(json.dumps(old))
    options = {"local_storage_location": old_file, "scopes": ["openid"], "prompt": approver, "interactive": interactive}

    dev = DeviceFlowManager("DEV", server.issuer, **options)  # type: ignore[arg-type]
    if interactive:
        dev.get_token()
    else:
        with pytest.raises(LoginRequired):
            dev.get_token()
    assert server.stats()["token"].get(REFRESH_GRANT, 0) == 0  # another server's token is never sent

    prod = DeviceFlowManager("PROD", server.issuer, **options)  # type: ignore[arg-type]
    prod.device_auth.logout(revoke=False)  # forget DEV's login (same realm, client and scope)
    if interactive:
        prod.get_token()
    else:
        with pytest.raises(LoginRequired):
            prod.get_token()
    assert server.stats()["token"].get(REFRESH_GRANT, 0) == 1  # tried once, refused
    assert len(approver.codes) == (2 if interactive else 0)
    assert json.loads(old_file.read_text()) == old
