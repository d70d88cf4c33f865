"""``Token``: building from token responses, JSON round trips, when to refresh, what repr shows."""

from __future__ import annotations

import json

import pytest

from deviceauth._token import ASSUMED_LIFETIME, Token, fingerprint

NOW = 1_700_000_000.0


def test_from_response_turns_relative_lifetimes_into_absolute_times() -> None:
    token = Token.from_response(
        {
            "access_token": "at",
            "token_type": "bearer",
            "expires_in": 300,
            "refresh_token": "rt",
            "refresh_expires_in": 1800,
            "id_token": "idt",
            "scope": "openid email",
        },
        NOW,
    )
    assert token.access_token == "at"
    assert token.token_type == "bearer"
    assert token.obtained_at == NOW
    assert token.expires_at == NOW + 300
    assert token.refresh_token == "rt"
    assert token.refresh_expires_at == NOW + 1800
    assert token.id_token == "idt"
    assert token.scope == "openid email"


def test_expires_in_as_string_is_accepted() -> None:
    token = Token.from_response({"access_token": "at", "expires_in": "120"}, NOW)
    assert token.expires_at == NOW + 120


def test_missing_expires_in_assumes_a_short_life_not_forever() -> None:
    token = Token.from_response({"access_token": "at"}, NOW)
    assert token.expires_at == NOW + ASSUMED_LIFETIME
    assert token.token_type == "Bearer"


@pytest.mark.parametrize("value", [0, "0", None])
def test_keycloak_refresh_expires_in_zero_means_the_refresh_token_does_not_expire(value: object) -> None:
    # Keycloak sends refresh_expires_in: 0 for offline tokens.
    token = Token.from_response(
        {"access_token": "at", "expires_in": 300, "refresh_token": "offline", "refresh_expires_in": value}, NOW
    )
    assert token.refresh_expires_at is None
    assert token.can_refresh(NOW + 10 * 365 * 86400)


def test_refresh_response_without_refresh_token_keeps_the_previous_one() -> None:
    previous = Token.from_response(
        {
            "access_token": "at1",
            "expires_in": 300,
            "refresh_token": "rt1",
            "refresh_expires_in": 1800,
            "id_token": "i1",
        },
        NOW,
    )
    later = NOW + 400
    token = Token.from_response({"access_token": "at2", "expires_in": 300}, later, previous=previous)
    assert token.access_token == "at2"
    assert token.refresh_token == "rt1"
    assert token.refresh_expires_at == NOW + 1800
    assert token.id_token == "i1"
    assert token.expires_at == later + 300


def test_refresh_response_with_a_new_refresh_token_replaces_the_previous_one() -> None:
    previous = Token.from_response({"access_token": "at1", "refresh_token": "rt1", "refresh_expires_in": 60}, NOW)
    token = Token.from_response(
        {"access_token": "at2", "refresh_token": "rt2", "refresh_expires_in": 1800}, NOW + 10, previous=previous
    )
    assert token.refresh_token == "rt2"
    assert token.refresh_expires_at == NOW + 10 + 1800


def test_without_previous_a_response_without_refresh_token_has_none() -> None:
    token = Token.from_response({"access_token": "at", "expires_in": 60}, NOW)
    assert token.refresh_token is None
    assert not token.can_refresh(NOW)


@pytest.mark.parametrize(
    "token",
    [
        Token(access_token="at", expires_at=NOW + 300, obtained_at=NOW),
        Token(
            access_token="at",
            expires_at=NOW + 300.5,
            obtained_at=NOW,
            token_type="DPoP",
            refresh_token="rt",
            refresh_expires_at=NOW + 1800,
            id_token="idt",
            scope="openid",
        ),
    ],
)
def test_json_round_trip(token: Token) -> None:
    assert Token.from_json(json.loads(json.dumps(token.to_json()))) == token


def test_to_json_leaves_out_absent_fields() -> None:
    data = Token(access_token="at", expires_at=NOW + 1, obtained_at=NOW).to_json()
    assert set(data) == {"access_token", "token_type", "expires_at", "obtained_at"}


def test_from_json_without_obtained_at_is_treated_as_already_due() -> None:
    token = Token.from_json({"access_token": "at", "expires_at": NOW + 300})
    assert token.obtained_at == NOW + 300
    assert token.refresh_due_at(None) == NOW + 300


@pytest.mark.parametrize(
    ("lifetime", "smallest", "largest"),
    [
        (3600, 60, 61),  # default leeway 60 s (plus at most a second for servers' whole-second exp)
        (100, 25, 26),  # ... capped near a quarter of the lifetime
        (4, 1, 2),  # ... and never more than half of it
    ],
)
def test_default_refresh_margin(lifetime: float, smallest: float, largest: float) -> None:
    token = Token(access_token="at", expires_at=NOW + lifetime, obtained_at=NOW)
    margin = token.expires_at - token.refresh_due_at(None)
    assert smallest <= margin <= largest


@pytest.mark.parametrize(
    ("lifetime", "leeway", "margin"),
    [
        (3600, 10, 10),  # explicit leeway is used as given
        (3600, 0, 0),
        (100, 90, 50),  # ... capped at half of the lifetime
        (4, 60, 2),
    ],
)
def test_explicit_refresh_margin(lifetime: float, leeway: float, margin: float) -> None:
    token = Token(access_token="at", expires_at=NOW + lifetime, obtained_at=NOW)
    assert token.refresh_due_at(leeway) == pytest.approx(NOW + lifetime - margin)


@pytest.mark.parametrize("leeway", [None, 60.0, 1e9])
def test_a_four_second_token_is_never_due_the_moment_it_arrives(leeway: float | None) -> None:
    token = Token.from_response({"access_token": "at", "expires_in": 4}, NOW)
    assert token.refresh_due_at(leeway) > NOW


def test_a_token_with_no_lifetime_is_due_at_its_expiry() -> None:
    token = Token(access_token="at", expires_at=NOW - 10, obtained_at=NOW)
    assert token.refresh_due_at(None) == NOW - 10


def test_can_refresh_respects_refresh_expiry() -> None:
    token = Token(access_token="at", expires_at=NOW, obtained_at=NOW, refresh_token="rt", refresh_expires_at=NOW + 5)
    assert token.can_refresh(NOW + 3.9)
    assert not token.can_refresh(NOW + 4.5)  # within the last second: the session may already be over
    assert not token.can_refresh(NOW + 5)
    assert not token.without_refresh_token().can_refresh(NOW)
    assert token.without_refresh_token().access_token == "at"


def test_repr_hides_every_token_string() -> None:
    token = Token(
        access_token="AT-s3cr3t",
        expires_at=NOW + 300,
        obtained_at=NOW,
        refresh_token="RT-s3cr3t",
        id_token="ID-s3cr3t",
        scope="openid",
    )
    text = repr(token) + str(token)
    for secret in ("AT-s3cr3t", "RT-s3cr3t", "ID-s3cr3t"):
        assert secret not in text
    assert "expires_at" in text
    assert "openid" in text


def test_fingerprint_is_short_stable_and_not_the_token() -> None:
    assert fingerprint("AT-s3cr3t") == fingerprint("AT-s3cr3t")
    assert fingerprint("AT-s3cr3t") != fingerprint("AT-s3cr3u")
    assert "s3cr3t" not in fingerprint("AT-s3cr3t")
    assert len(fingerprint("x")) == 10
