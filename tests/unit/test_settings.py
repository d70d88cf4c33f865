"""Arguments are checked when a ``DeviceAuth`` is built, with errors that name the argument."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from deviceauth_fakes import CLIENT_ID, ISSUER, FakeAuthServer

from deviceauth import DeviceAuth, LoginRequired
from deviceauth._settings import identity_key


def build(tmp_path: Path, **kwargs: Any) -> DeviceAuth:
    options: dict[str, Any] = {"issuer": ISSUER, "client_id": CLIENT_ID, "cache": tmp_path / "c.json"}
    options.update(kwargs)
    return DeviceAuth(**options)


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"issuer": "auth.example.org/realms/x"}, ValueError, "issuer"),
        ({"issuer": "ftp://auth.example.org/realms/x"}, ValueError, "issuer"),
        ({"issuer": "javascript:alert(1)"}, ValueError, "issuer"),
        ({"issuer": "https://auth.example.org/realms/x?a=b"}, ValueError, "issuer"),
        ({"issuer": "https://auth.example.org/realms/x#frag"}, ValueError, "issuer"),
        ({"issuer": "https://user:pw@auth.example.org/realms/x"}, ValueError, "issuer"),
        ({"issuer": "https://evil\\@auth.example.org/"}, ValueError, "issuer"),
        ({"issuer": "https://auth.example.org/\r\nX: y"}, ValueError, "issuer"),
        ({"issuer": 42}, TypeError, "issuer"),
        ({"client_id": ""}, ValueError, "client_id"),
        ({"client_id": None}, TypeError, "client_id"),
        ({"client_id": "a\nb"}, ValueError, "client_id"),
        ({"leeway": -100}, ValueError, "leeway"),
        ({"leeway": math.nan}, ValueError, "leeway"),
        ({"leeway": math.inf}, ValueError, "leeway"),
        ({"leeway": "60"}, TypeError, "leeway"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"timeout": math.inf}, ValueError, "timeout"),
        ({"timeout": True}, TypeError, "timeout"),
        ({"lock_timeout": math.nan}, ValueError, "lock_timeout"),
        ({"token_endpoint_auth_method": "bogus"}, ValueError, "token_endpoint_auth_method"),
        ({"token_endpoint": "javascript:alert(1)"}, ValueError, "token_endpoint"),
        ({"scope": ["a b"]}, ValueError, "scope"),
        ({"client_secret": ""}, ValueError, "client_secret"),
        ({"prompt": "print"}, TypeError, "prompt"),
        ({"cache": 42}, TypeError, "cache"),
    ],
)
def test_bad_arguments_fail_at_construction(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], names: str
) -> None:
    with pytest.raises(error) as caught:
        build(tmp_path, **kwargs)
    assert names in str(caught.value)


def test_secrets_in_bad_arguments_are_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="client_secret") as caught:
        build(tmp_path, client_secret="s3cr3t\n")
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize("issuer", ["https://auth.example.org/realms/x/", "http://127.0.0.1:8080/realms/x"])
def test_good_issuers_are_accepted(tmp_path: Path, issuer: str) -> None:
    assert build(tmp_path, issuer=issuer).issuer == issuer.rstrip("/")


def test_zero_leeway_is_allowed(tmp_path: Path) -> None:
    build(tmp_path, leeway=0)


def test_identity_keys_cannot_collide_through_spaces_in_the_client_id() -> None:
    assert identity_key(ISSUER, "app", "admin") != identity_key(ISSUER, "app admin", None)
    assert identity_key(ISSUER, "app%20admin", None) != identity_key(ISSUER, "app admin", None)
    # Keys of ordinary clients are the ones earlier versions wrote.
    assert identity_key(ISSUER, "client-tools", "openid") == f"{ISSUER} client-tools openid"


@pytest.mark.parametrize(
    ("bound_to", "sent"),
    [("https://other.example.org/realms/x", False), (ISSUER + "/", True), (None, True)],
)
def test_offline_token_from_the_environment_is_bound_to_its_issuer(
    server: FakeAuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bound_to: str | None, sent: bool
) -> None:
    monkeypatch.setenv("DEVICEAUTH_OFFLINE_TOKEN", "offline-SECRET")
    if bound_to is None:
        monkeypatch.delenv("DEVICEAUTH_ISSUER", raising=False)
    else:
        monkeypatch.setenv("DEVICEAUTH_ISSUER", bound_to)
    body = server.grant()
    auth = build(tmp_path, interactive=False)
    if sent:
        assert auth.get_token() == body["access_token"]
        assert [form.get("refresh_token") for form in server.token_requests] == ["offline-SECRET"]
    else:
        with pytest.raises(LoginRequired):
            auth.get_token()
        assert server.token_requests == []
