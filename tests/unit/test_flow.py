"""``run_device_flow``: the RFC 8628 polling policy, with a fake clock and no real waiting."""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Sequence
from typing import Any, cast

import pytest
import requests
import responses
from deviceauth_fakes import (
    CLIENT_ID,
    DEVICE_CODE,
    DEVICE_ENDPOINT,
    DEVICE_GRANT,
    TOKEN_ENDPOINT,
    USER_CODE,
    FakeAuthServer,
    FakeClock,
    oauth_error,
)

from deviceauth import AccessDenied, AuthorizationError, DeviceCode, DeviceCodeExpired, ServerError
from deviceauth._exceptions import AuthorizationPending
from deviceauth._flow import WaitStatus, run_device_flow
from deviceauth._oauth import OAuthClient

PENDING = AuthorizationPending(slow=False)
SLOW_DOWN = AuthorizationPending(slow=True)
TOKEN: dict[str, Any] = {"access_token": "at", "expires_in": 300}
MAX_POLLS = 500  # every fake bounds its loop


class FakeOAuth:
    """Stands in for ``OAuthClient``: a scripted sequence of poll answers, then always ``last``."""

    def __init__(
        self,
        clock: FakeClock,
        answers: Sequence[BaseException | dict[str, Any]],
        *,
        interval: float | None = 5,
        expires_in: float | None = 600,
        complete: bool = True,
        last: BaseException | dict[str, Any] | None = None,
    ) -> None:
        self.clock = clock
        self.answers = list(answers)
        self.last = last
        self.polls: list[float] = []
        self.events: list[str] = []
        self.body: dict[str, Any] = {
            "device_code": DEVICE_CODE,
            "user_code": USER_CODE,
            "verification_uri": "https://v",
        }
        if interval is not None:
            self.body["interval"] = interval
        if expires_in is not None:
            self.body["expires_in"] = expires_in
        if complete:
            self.body["verification_uri_complete"] = f"https://v?code={USER_CODE}"

    def request_device_code(self, endpoint: str, scope: str | None) -> dict[str, Any]:
        self.events.append("device")
        return dict(self.body)

    def poll(self, endpoint: str, device_code: str) -> dict[str, Any]:
        assert device_code == DEVICE_CODE
        assert len(self.polls) < MAX_POLLS, "the poller does not stop"
        self.polls.append(self.clock())
        self.events.append("poll")
        answer = self.answers.pop(0) if self.answers else self.last
        assert answer is not None, "more polls than scripted"
        if isinstance(answer, BaseException):
            raise answer
        return answer


def flow(fake: FakeOAuth, clock: FakeClock, shown: list[DeviceCode] | None = None) -> dict[str, Any]:
    def show(code: DeviceCode) -> None:
        fake.events.append("show")
        if shown is not None:
            shown.append(code)

    return run_device_flow(
        cast(OAuthClient, fake), DEVICE_ENDPOINT, TOKEN_ENDPOINT, "openid", show=show, clock=clock, sleep=clock.sleep
    )


def transient() -> ServerError:
    return ServerError("the server answered HTTP 503", transient=True)


def test_waits_the_interval_before_every_poll(clock: FakeClock) -> None:
    start = clock()
    fake = FakeOAuth(clock, [PENDING, PENDING, TOKEN], interval=3)
    assert flow(fake, clock) == TOKEN
    assert clock.sleeps == [3, 3, 3]
    assert fake.polls == [start + 3, start + 6, start + 9]


def test_default_interval_is_five_seconds(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [PENDING, TOKEN], interval=None)
    flow(fake, clock)
    assert clock.sleeps == [5, 5]


def test_slow_down_adds_five_seconds_for_the_rest_of_the_flow(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [SLOW_DOWN, PENDING, PENDING, SLOW_DOWN, PENDING, TOKEN], interval=2)
    flow(fake, clock)
    assert clock.sleeps == [2, 7, 7, 7, 12, 12]


def test_authorization_pending_keeps_polling_until_the_token_arrives(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [PENDING] * 20 + [TOKEN], interval=5, expires_in=600)
    assert flow(fake, clock) == TOKEN
    assert len(fake.polls) == 21


def test_stops_at_expires_in_without_polling_past_it(clock: FakeClock) -> None:
    start = clock()
    fake = FakeOAuth(clock, [], interval=5, expires_in=17, last=PENDING)
    with pytest.raises(DeviceCodeExpired) as caught:
        flow(fake, clock)
    assert caught.value.error == "expired_token"
    # Every interval, then once more just before expiry instead of giving up one interval early.
    assert fake.polls == [start + 5, start + 10, start + 15, start + 16]
    assert clock() <= start + 17  # gave up without sleeping past the code's life
    assert "expired" in str(caught.value)


def test_slow_down_near_the_end_polls_once_more_before_expiry_not_after(clock: FakeClock) -> None:
    start = clock()
    fake = FakeOAuth(clock, [SLOW_DOWN], interval=5, expires_in=12, last=PENDING)
    with pytest.raises(DeviceCodeExpired):
        flow(fake, clock)
    assert fake.polls == [start + 5, start + 11]
    assert clock() <= start + 12


def test_access_denied_is_terminal(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [PENDING, AccessDenied("denied", error="access_denied")], last=TOKEN)
    with pytest.raises(AccessDenied):
        flow(fake, clock)
    assert len(fake.polls) == 2


def test_expired_token_is_terminal(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [DeviceCodeExpired("expired", error="expired_token")], last=TOKEN)
    with pytest.raises(DeviceCodeExpired):
        flow(fake, clock)
    assert len(fake.polls) == 1


def test_transient_server_errors_are_retried_with_growing_backoff(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [transient(), transient(), transient(), TOKEN], interval=5, expires_in=600)
    assert flow(fake, clock) == TOKEN
    assert clock.sleeps == [5, 5, 10, 20]


def test_backoff_is_capped(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [transient()] * 12 + [TOKEN], interval=5, expires_in=3600)
    flow(fake, clock)
    assert max(clock.sleeps) == 60
    assert clock.sleeps == sorted(clock.sleeps)


def test_backoff_resets_once_the_server_answers_again(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [transient(), transient(), PENDING, TOKEN], interval=5)
    flow(fake, clock)
    assert clock.sleeps == [5, 5, 10, 5]


def test_transient_errors_until_the_deadline_end_with_device_code_expired(clock: FakeClock) -> None:
    start = clock()
    fake = FakeOAuth(clock, [], interval=5, expires_in=120, last=transient())
    with pytest.raises(DeviceCodeExpired):
        flow(fake, clock)
    assert fake.polls
    assert max(fake.polls) < start + 120


def test_non_transient_server_error_is_not_retried(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [ServerError("bad answer")], last=TOKEN)
    with pytest.raises(ServerError, match="bad answer"):
        flow(fake, clock)
    assert len(fake.polls) == 1


@pytest.mark.parametrize("complete", [True, False])
def test_the_prompt_always_gets_the_user_code(clock: FakeClock, complete: bool) -> None:
    shown: list[DeviceCode] = []
    fake = FakeOAuth(clock, [TOKEN], complete=complete)
    flow(fake, clock, shown)
    assert len(shown) == 1
    assert shown[0].user_code == USER_CODE
    assert shown[0].verification_uri == "https://v"
    if complete:
        assert shown[0].verification_uri_complete == f"https://v?code={USER_CODE}"
        assert shown[0].url == shown[0].verification_uri_complete
    else:
        assert shown[0].url == "https://v"
    assert fake.events == ["device", "show", "poll"]


def test_on_started_runs_before_the_prompt(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [TOKEN], expires_in=100)
    started: list[float] = []

    def on_started(code: DeviceCode) -> None:
        started.append(code.expires_at)
        fake.events.append("started")

    run_device_flow(
        cast(OAuthClient, fake),
        DEVICE_ENDPOINT,
        TOKEN_ENDPOINT,
        None,
        show=lambda code: fake.events.append("show"),
        clock=clock,
        sleep=clock.sleep,
        on_started=on_started,
    )
    assert fake.events == ["device", "started", "show", "poll"]
    assert started == [pytest.approx(clock() - 5 + 100)]


def test_keyboard_interrupt_during_the_wait_propagates(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [], last=PENDING)

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_device_flow(
            cast(OAuthClient, fake),
            DEVICE_ENDPOINT,
            TOKEN_ENDPOINT,
            None,
            show=lambda c: None,
            clock=clock,
            sleep=interrupted,
        )
    assert fake.polls == []


def test_device_code_repr_hides_the_device_code() -> None:
    code = DeviceCode.from_response(
        {"device_code": DEVICE_CODE, "user_code": USER_CODE, "verification_url": "https://google.example/device"}, 0.0
    )
    assert DEVICE_CODE not in repr(code)
    assert USER_CODE in repr(code)
    assert code.verification_uri == "https://google.example/device"
    assert code.interval == 5
    assert code.expires_at == 600


# -- the same policy through the real OAuthClient and a fake server ---------------------------------


def real_flow(server: FakeAuthServer, clock: FakeClock, shown: list[DeviceCode]) -> dict[str, Any]:
    client = OAuthClient(CLIENT_ID)
    return run_device_flow(
        client, DEVICE_ENDPOINT, TOKEN_ENDPOINT, "openid", show=shown.append, clock=clock, sleep=clock.sleep
    )


def test_server_round_trip_sends_rfc_8628_requests(
    server: FakeAuthServer, clock: FakeClock, shown: list[DeviceCode]
) -> None:
    server.device(interval=2)
    server.token_answers += [oauth_error("authorization_pending"), oauth_error("slow_down")]
    body = server.grant()
    assert real_flow(server, clock, shown)["access_token"] == body["access_token"]
    assert clock.sleeps == [2, 2, 7]
    assert server.device_requests == [{"client_id": CLIENT_ID, "scope": "openid"}]
    for form in server.token_requests:
        assert form["grant_type"] == DEVICE_GRANT
        assert form["device_code"] == DEVICE_CODE
        assert form["client_id"] == CLIENT_ID
        assert "scope" not in form
    assert shown[0].user_code == USER_CODE


def test_server_5xx_and_connection_errors_are_retried(
    server: FakeAuthServer, clock: FakeClock, shown: list[DeviceCode]
) -> None:
    server.device(interval=1)
    server.token_answers += [
        (503, {"error": "temporarily_unavailable"}),
        requests.ConnectionError("connection reset"),
        oauth_error("authorization_pending"),
    ]
    body = server.grant()
    assert real_flow(server, clock, shown)["access_token"] == body["access_token"]
    assert len(server.token_requests) == 4
    assert clock.sleeps == [1, 1, 2, 1]


def test_server_non_json_answer_is_retried(
    mocked: responses.RequestsMock, server: FakeAuthServer, clock: FakeClock, shown: list[DeviceCode]
) -> None:
    server.device(interval=1)
    mocked.replace(responses.POST, TOKEN_ENDPOINT, body="<html>gateway</html>", status=502)
    with pytest.raises(DeviceCodeExpired):
        real_flow(server, clock, shown)
    assert 1 < server.calls_to(TOKEN_ENDPOINT) < 40


def test_server_body_cut_short_is_retried(
    mocked: responses.RequestsMock, server: FakeAuthServer, clock: FakeClock, shown: list[DeviceCode]
) -> None:
    server.device(interval=1)
    body = server.grant()
    server.token_answers.insert(0, requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"))
    assert real_flow(server, clock, shown)["access_token"] == body["access_token"]
    assert len(server.token_requests) == 2


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("access_denied", AccessDenied),
        ("expired_token", DeviceCodeExpired),
        ("unauthorized_client", AuthorizationError),
    ],
)
def test_server_terminal_errors(
    server: FakeAuthServer, clock: FakeClock, shown: list[DeviceCode], error: str, expected: type[Exception]
) -> None:
    server.device(interval=1)
    server.token_answers += [oauth_error("authorization_pending"), oauth_error(error, description="nope")]
    with pytest.raises(expected) as caught:
        real_flow(server, clock, shown)
    assert getattr(caught.value, "error", None) == error
    assert len(server.token_requests) == 2


def test_device_authorization_error_is_reported(mocked: responses.RequestsMock, clock: FakeClock) -> None:
    mocked.add(responses.POST, DEVICE_ENDPOINT, json={"error": "invalid_client"}, status=401)
    with pytest.raises(AuthorizationError) as caught:
        real_flow(FakeAuthServer(mocked), clock, [])
    assert caught.value.error == "invalid_client"


def test_device_authorization_response_without_user_code_is_a_server_error(
    mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    mocked.add(responses.POST, DEVICE_ENDPOINT, json={"device_code": "x", "verification_uri": "https://v"})
    with pytest.raises(ServerError, match="user_code"):
        real_flow(FakeAuthServer(mocked), clock, [])


# -- what the server says about the code, clamped ------------------------------------------------------


def parse(**fields: Any) -> DeviceCode:
    body: dict[str, Any] = {"device_code": DEVICE_CODE, "user_code": USER_CODE, "verification_uri": "https://v"}
    body.update(fields)
    return DeviceCode.from_response(body, 0.0)


@pytest.mark.parametrize(
    ("expires_in", "life"),
    [
        (600, 600),
        (90.5, 90.5),
        ("900", 900),  # some servers send numbers as strings
        (1800, 1800),
        (1801, 1800),
        (1e12, 1800),
        (json.loads("1e400"), 1800),  # inf from JSON
        (math.inf, 1800),
        (10**400, 1800),  # a JSON integer too big for a float
        (0, 600),
        (-30, 600),
        (-(10**400), 600),
        (math.nan, 600),
        ("soon", 600),
        ("1" * 500, 600),
        ([1], 600),
        ({"s": 1}, 600),
        (True, 600),
        (None, 600),
    ],
)
def test_device_code_life_is_clamped(expires_in: Any, life: float, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "deviceauth.flow")
    fields = {} if expires_in is None else {"expires_in": expires_in}
    assert parse(**fields).expires_at == life
    if life == 600 and expires_in != 600:
        assert "assuming 600 s" in caplog.text
    if life == 1800 and expires_in != 1800:
        assert "using at most 1800 s" in caplog.text


def test_caller_may_allow_a_longer_code_life() -> None:
    body = {"device_code": DEVICE_CODE, "user_code": USER_CODE, "verification_uri": "https://v", "expires_in": 7200}
    assert DeviceCode.from_response(body, 0.0, max_life=3600).expires_at == 3600
    assert DeviceCode.from_response(body, 0.0, max_life=math.inf).expires_at == 7200


@pytest.mark.parametrize(
    ("interval", "used"),
    [
        (None, 5),
        (5, 5),
        ("7", 7),
        (2.5, 2.5),
        (1e-9, 1),
        (0.2, 1),
        (61, 60),
        (1e12, 60),
        (json.loads("1e400"), 60),
        (10**400, 60),
        (0, 5),
        (-1, 5),
        (math.nan, 5),
        ("fast", 5),
        ([1], 5),
        (False, 5),
    ],
)
def test_poll_interval_is_clamped(interval: Any, used: float) -> None:
    fields = {} if interval is None else {"interval": interval}
    assert parse(**fields).interval == used


def test_a_code_that_never_expires_stops_polling_at_the_cap(clock: FakeClock) -> None:
    start = clock()
    fake = FakeOAuth(clock, [], interval=5, expires_in=1e12, last=PENDING)
    with pytest.raises(DeviceCodeExpired):
        flow(fake, clock)
    assert clock() <= start + 1800
    assert len(fake.polls) == 1800 // 5
    assert max(fake.polls) == start + 1799


def test_a_tiny_interval_polls_at_most_once_a_second(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [], interval=1e-9, expires_in=30, last=PENDING)
    with pytest.raises(DeviceCodeExpired):
        flow(fake, clock)
    gaps = [later - earlier for earlier, later in itertools.pairwise(fake.polls)]
    assert min(gaps) >= 1
    assert len(fake.polls) <= 30


def test_slow_down_never_goes_beyond_the_maximum_interval(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [SLOW_DOWN] * 4 + [PENDING, TOKEN], interval=50, expires_in=1800)
    flow(fake, clock)
    assert clock.sleeps == [50, 55, 60, 60, 60, 60]


def test_interval_longer_than_the_code_life_still_polls_once_before_expiry(clock: FakeClock) -> None:
    start = clock()
    fake = FakeOAuth(clock, [], interval=60, expires_in=30, last=PENDING)
    with pytest.raises(DeviceCodeExpired):
        flow(fake, clock)
    assert fake.polls == [start + 29]


def test_interval_longer_than_the_code_life_can_still_sign_in(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [TOKEN], interval=60, expires_in=30)
    assert flow(fake, clock) == TOKEN
    assert len(fake.polls) == 1


def test_a_code_shorter_than_the_margin_is_polled_at_once(clock: FakeClock) -> None:
    start = clock()
    fake = FakeOAuth(clock, [], interval=5, expires_in=0.5, last=PENDING)
    with pytest.raises(DeviceCodeExpired):
        flow(fake, clock)
    assert fake.polls == [start]


def test_no_extra_poll_right_after_the_last_one(clock: FakeClock) -> None:
    start = clock()
    fake = FakeOAuth(clock, [], interval=5, expires_in=15.5, last=PENDING)
    with pytest.raises(DeviceCodeExpired):
        flow(fake, clock)
    # 10 + 5 would pass the final poll moment (14.5): one last poll there, not at 10 and 10.5.
    assert fake.polls == [start + 5, start + 10, start + 14.5]


def test_approval_in_the_last_seconds_is_not_lost(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [PENDING, PENDING, PENDING, TOKEN], interval=5, expires_in=17)
    assert flow(fake, clock) == TOKEN
    assert len(fake.polls) == 4


def test_truncated_or_garbled_bodies_are_retried_within_the_deadline(clock: FakeClock) -> None:
    cut_short = ServerError("the token endpoint's answer was cut short", transient=True)
    garbled = ServerError("the token endpoint did not answer with a JSON object", transient=True)
    fake = FakeOAuth(clock, [cut_short, garbled, PENDING, TOKEN], interval=5)
    assert flow(fake, clock) == TOKEN
    assert clock.sleeps == [5, 5, 10, 5]


def test_backoff_near_the_deadline_still_polls_just_before_expiry(clock: FakeClock) -> None:
    start = clock()
    fake = FakeOAuth(clock, [], interval=5, expires_in=40, last=transient())
    with pytest.raises(DeviceCodeExpired):
        flow(fake, clock)
    assert fake.polls == [start + 5, start + 10, start + 20, start + 39]


def test_a_clock_that_does_not_move_still_ends(clock: FakeClock) -> None:
    fake = FakeOAuth(clock, [], interval=5, expires_in=60, last=PENDING)
    with pytest.raises(DeviceCodeExpired):
        run_device_flow(
            cast(OAuthClient, fake),
            DEVICE_ENDPOINT,
            TOKEN_ENDPOINT,
            None,
            show=lambda code: None,
            clock=clock,
            sleep=lambda seconds: None,
        )
    assert 1 <= len(fake.polls) <= 61


def test_max_code_life_must_be_positive(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="max_code_life"):
        run_device_flow(
            cast(OAuthClient, FakeOAuth(clock, [TOKEN])),
            DEVICE_ENDPOINT,
            TOKEN_ENDPOINT,
            None,
            show=lambda code: None,
            clock=clock,
            sleep=clock.sleep,
            max_code_life=0,
        )


# -- the prompt hears how the wait goes ------------------------------------------------------------------


class RecordingStatus:
    def __init__(self, tick_every: float = 1.0, fail: bool = False) -> None:
        self.tick_every = tick_every
        self.ticks: list[float] = []
        self.outcomes: list[str] = []
        self.fail = fail

    def tick(self, remaining: float) -> None:
        self.ticks.append(remaining)
        if self.fail:
            raise OSError("stderr is gone")

    def done(self, outcome: str) -> None:
        self.outcomes.append(outcome)
        if self.fail:
            raise OSError("stderr is gone")


def flow_with_status(fake: FakeOAuth, clock: FakeClock, status: RecordingStatus, **kw: Any) -> dict[str, Any]:
    return run_device_flow(
        cast(OAuthClient, fake),
        DEVICE_ENDPOINT,
        TOKEN_ENDPOINT,
        None,
        show=lambda code: cast(WaitStatus, status),
        clock=clock,
        sleep=kw.get("sleep", clock.sleep),
    )


def test_status_ticks_every_second_with_the_time_left(clock: FakeClock) -> None:
    status = RecordingStatus()
    fake = FakeOAuth(clock, [PENDING, TOKEN], interval=3, expires_in=100)
    flow_with_status(fake, clock, status)
    assert clock.sleeps == [1] * 6
    assert status.ticks[:4] == [100, 99, 98, 97]
    assert status.ticks[-1] == 94
    assert status.outcomes == ["approved"]


@pytest.mark.parametrize(
    ("answer", "outcome", "error"),
    [
        (AccessDenied("denied", error="access_denied"), "denied", AccessDenied),
        (DeviceCodeExpired("expired", error="expired_token"), "expired", DeviceCodeExpired),
        (ServerError("bad answer"), "failed", ServerError),
    ],
)
def test_status_hears_how_the_wait_ended(
    clock: FakeClock, answer: BaseException, outcome: str, error: type[BaseException]
) -> None:
    status = RecordingStatus()
    with pytest.raises(error):
        flow_with_status(FakeOAuth(clock, [answer]), clock, status)
    assert status.outcomes == [outcome]


def test_status_hears_the_code_expire(clock: FakeClock) -> None:
    status = RecordingStatus()
    with pytest.raises(DeviceCodeExpired):
        flow_with_status(FakeOAuth(clock, [], interval=5, expires_in=12, last=PENDING), clock, status)
    assert status.outcomes == ["expired"]


def test_ctrl_c_ends_the_status_as_cancelled(clock: FakeClock) -> None:
    status = RecordingStatus()
    calls: list[float] = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 3:
            raise KeyboardInterrupt
        clock.sleep(seconds)

    with pytest.raises(KeyboardInterrupt):
        flow_with_status(FakeOAuth(clock, [], last=PENDING), clock, status, sleep=sleep)
    assert status.outcomes == ["cancelled"]


def test_a_broken_status_does_not_cost_the_login(clock: FakeClock) -> None:
    status = RecordingStatus(fail=True)
    assert flow_with_status(FakeOAuth(clock, [PENDING, TOKEN], interval=2), clock, status) == TOKEN
    assert len(status.ticks) == 1  # no more updates after the first failure
    assert clock.sleeps == [2, 2]  # and no more short steps either
