"""Every public error pickles with its details, and sits where callers expect it in the tree."""

from __future__ import annotations

import pickle
import traceback

import pytest

import deviceauth
from deviceauth import (
    AccessDenied,
    AuthorizationError,
    CacheError,
    DeviceAuthError,
    DeviceCodeExpired,
    DiscoveryError,
    InsecureTransport,
    LockTimeout,
    LoginRequired,
    ServerError,
    TokenRejected,
)

ERRORS = sorted(
    (
        getattr(deviceauth, name)
        for name in deviceauth.__all__
        if isinstance(getattr(deviceauth, name), type) and issubclass(getattr(deviceauth, name), DeviceAuthError)
    ),
    key=lambda cls: cls.__name__,
)


def test_every_error_class_is_exported() -> None:
    assert {cls.__name__ for cls in ERRORS} == {
        "AccessDenied",
        "AuthorizationError",
        "CacheError",
        "DeviceAuthError",
        "DeviceCodeExpired",
        "DiscoveryError",
        "InsecureTransport",
        "LockTimeout",
        "LoginRequired",
        "ServerError",
        "TokenRejected",
    }


DETAILS: dict[type[DeviceAuthError], dict[str, object]] = {
    LoginRequired: {"issuer": "https://a.example/realms/r", "client_id": "cli", "command": "deviceauth login ..."},
    AuthorizationError: {"error": "invalid_scope"},
    AccessDenied: {"error": "access_denied"},
    DeviceCodeExpired: {"error": "expired_token"},
    TokenRejected: {"error": "invalid_grant"},
    ServerError: {"url": "https://a.example:443", "transient": True, "error": "server_error"},
    DiscoveryError: {"url": "https://a.example:443", "transient": False, "error": None},
    CacheError: {"path": "/tmp/c/.tokens.json"},
    LockTimeout: {"lock_file": "/tmp/c/.tokens.json.lock"},
    DeviceAuthError: {},
    InsecureTransport: {},
}


def test_every_error_class_declares_its_details() -> None:
    assert set(DETAILS) == set(ERRORS)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_errors_pickle_with_their_details(cls: type[DeviceAuthError]) -> None:
    error = cls("something failed; run X", **DETAILS[cls])  # type: ignore[arg-type]
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(clone) is cls
    assert str(clone) == str(error) == "something failed; run X"
    assert clone.message == error.message
    for name, value in DETAILS[cls].items():
        assert getattr(clone, name) == value, name
    assert clone.args == error.args


@pytest.mark.parametrize("cls", [c for c in ERRORS if c is not LockTimeout], ids=lambda cls: cls.__name__)
def test_details_are_always_set(cls: type[DeviceAuthError]) -> None:
    error = cls("plain")
    for name in DETAILS[cls]:
        assert hasattr(error, name), name


def test_errors_name_the_public_module_in_tracebacks() -> None:
    try:
        raise LoginRequired("no token", issuer="https://a.example", client_id="c", command="deviceauth login")
    except LoginRequired as exc:
        text = "".join(traceback.format_exception_only(exc))
    assert text.startswith("deviceauth.LoginRequired: no token")


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_errors_pickle_without_details(cls: type[DeviceAuthError]) -> None:
    error = cls("plain", lock_file="/tmp/x.lock") if cls is LockTimeout else cls("plain")  # type: ignore[call-arg]
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(clone) is cls
    assert str(clone) == "plain"


def test_pickled_error_keeps_its_message_through_a_traceback() -> None:
    try:
        raise LockTimeout("timed out waiting for /tmp/x.lock", lock_file="/tmp/x.lock")
    except LockTimeout as exc:
        clone = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes
    text = "".join(traceback.format_exception_only(clone))
    assert "timed out waiting for /tmp/x.lock" in text


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (LoginRequired, (DeviceAuthError,)),
        (AccessDenied, (AuthorizationError,)),
        (DeviceCodeExpired, (AuthorizationError,)),
        (TokenRejected, (AuthorizationError,)),
        (DiscoveryError, (ServerError,)),
        (CacheError, (DeviceAuthError,)),
        (LockTimeout, (DeviceAuthError, TimeoutError)),
        (InsecureTransport, (DeviceAuthError, ValueError)),
    ],
)
def test_error_tree(cls: type[Exception], bases: tuple[type[Exception], ...]) -> None:
    for base in bases:
        assert issubclass(cls, base)


def test_server_error_is_not_transient_by_default() -> None:
    assert ServerError("x").transient is False
    assert ServerError("x", transient=True).transient is True
