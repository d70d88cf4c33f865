"""``run_device_flow``: the RFC 8628 polling policy, with a fake clock and no real waiting."""

from __future__ import annotations

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
from deviceauth._flow import run_device_flow
from deviceauth._oauth import AuthorizationPending, OAuthClient

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
    try:
        return run_device_flow(
            client, DEVICE_ENDPOINT, TOKEN_ENDPOINT, "openid", show=shown.append, clock=clock, sleep=clock.sleep
        )
    finally:
        client.close()


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
