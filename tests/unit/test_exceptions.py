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


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_errors_pickle_with_their_details(cls: type[DeviceAuthError]) -> None:
    error = cls("something failed; run X", error="invalid_grant", lock_file="/tmp/c.lock", transient=True)
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(clone) is cls
    assert str(clone) == str(error) == "something failed; run X"
    assert clone.message == error.message
    assert clone.error == "invalid_grant"  # type: ignore[attr-defined]
    assert clone.lock_file == "/tmp/c.lock"  # type: ignore[attr-defined]
    assert clone.transient is True  # type: ignore[attr-defined]
    assert clone.args == error.args


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_errors_pickle_without_details(cls: type[DeviceAuthError]) -> None:
    clone = pickle.loads(pickle.dumps(cls("plain")))  # noqa: S301 - our own bytes
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
