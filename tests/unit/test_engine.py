"""``TokenEngine``: memory → cache file → lock → refresh → login, against a fake server and clock."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import filelock
import pytest
import requests
from deviceauth_fakes import (
    CLIENT_ID,
    DEVICE_ENDPOINT,
    DEVICE_GRANT,
    DISCOVERY_URL,
    ISSUER,
    NON_INTERACTIVE,
    REVOCATION_ENDPOINT,
    TOKEN_ENDPOINT,
    USER_CODE,
    FakeAuthServer,
    FakeClock,
    cached_token,
    interactive,
    make_engine,
    make_token,
    metadata,
    oauth_error,
    read_cache,
    token_body,
    write_cache,
)

from deviceauth import DeviceCode, DiscoveryError, LoginRequired, ServerError, Token
from deviceauth._engine import TokenEngine
from deviceauth._filestore import FileStore
from deviceauth._settings import Identity, Interaction, identity_key
from deviceauth._store import Written

ME = (ISSUER, CLIENT_ID, None)
OTHER = (ISSUER, CLIENT_ID, "openid offline_access")


@pytest.fixture(autouse=True)
def _no_offline_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVICEAUTH_OFFLINE_TOKEN", raising=False)


def refreshes(server: FakeAuthServer) -> list[str]:
    return [form["refresh_token"] for form in server.token_requests if form.get("grant_type") == "refresh_token"]


# -- login ------------------------------------------------------------------------------------------


def test_first_use_logs_in_and_writes_the_cache(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, shown: list[DeviceCode]
) -> None:
    server.device(interval=5)
    server.token_answers.append(oauth_error("authorization_pending"))
    body = server.grant()
    engine = make_engine(cache_path, clock, scope="openid")
    assert engine.access_token(interactive(shown)) == body["access_token"]
    assert [code.user_code for code in shown] == [USER_CODE]
    assert clock.sleeps == [5, 5]
    assert [form["grant_type"] for form in server.token_requests] == [DEVICE_GRANT, DEVICE_GRANT]
    assert server.device_requests[0]["scope"] == "openid"
    stored = cached_token(cache_path, "openid")
    assert stored is not None
    assert stored.access_token == body["access_token"]
    assert stored.refresh_token == body["refresh_token"]
    entry = read_cache(cache_path)["identities"][identity_key(ISSUER, CLIENT_ID, "openid")]
    assert (entry["issuer"], entry["client_id"], entry["scope"]) == (ISSUER, CLIENT_ID, "openid")
    assert not engine.store.login_marker_path.exists()


def test_login_marker_is_present_while_the_person_is_asked(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    server.device(interval=5, expires_in=300)
    server.grant()
    engine = make_engine(cache_path, clock)
    seen: list[Any] = []

    def prompt(code: DeviceCode) -> None:
        seen.append(engine.store.login_in_progress())

    engine.access_token(Interaction(interactive=True, prompt=prompt, open_browser=False))
    assert seen[0] is not None
    assert seen[0].expires_at == pytest.approx(clock() - 5 + 300)
    assert engine.store.login_in_progress() is None


def test_no_device_authorization_endpoint_is_a_discovery_error(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, shown: list[DeviceCode]
) -> None:
    server.mock.replace("GET", DISCOVERY_URL, json=metadata(device_authorization_endpoint=None))
    with pytest.raises(DiscoveryError) as caught:
        make_engine(cache_path, clock).access_token(interactive(shown))
    assert "device_authorization_endpoint" in str(caught.value)
    assert shown == []
    assert server.token_requests == []


def test_non_interactive_without_any_token_raises_login_required_naming_the_command(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    with pytest.raises(LoginRequired) as caught:
        make_engine(cache_path, clock).access_token(NON_INTERACTIVE)
    assert f"deviceauth login --issuer {ISSUER} --client-id {CLIENT_ID}" in str(caught.value)
    assert str(cache_path) in str(caught.value)
    assert len(server.mock.calls) == 0


def test_login_required_names_the_scope(server: FakeAuthServer, clock: FakeClock, cache_path: Path) -> None:
    with pytest.raises(LoginRequired, match="--scope 'email openid'"):
        make_engine(cache_path, clock, scope="email openid").access_token(NON_INTERACTIVE)


def test_explicit_login_replaces_a_valid_cached_token(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, shown: list[DeviceCode]
) -> None:
    old = make_token(clock())
    write_cache(cache_path, {ME: old})
    server.device(interval=1)
    body = server.grant()
    engine = make_engine(cache_path, clock)
    token = engine.login(interactive(shown))
    assert token.access_token == body["access_token"]
    assert engine.access_token(NON_INTERACTIVE) == body["access_token"]
    stored = cached_token(cache_path)
    assert stored is not None
    assert stored.access_token == body["access_token"]


def test_explicit_endpoints_skip_discovery(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, shown: list[DeviceCode]
) -> None:
    server.device(interval=1)
    body = server.grant()
    engine = make_engine(
        cache_path,
        clock,
        endpoints=(("token_endpoint", TOKEN_ENDPOINT), ("device_authorization_endpoint", DEVICE_ENDPOINT)),
    )
    assert engine.access_token(interactive(shown)) == body["access_token"]
    assert server.calls_to(DISCOVERY_URL) == 0


# -- memory and cache -------------------------------------------------------------------------------


def test_warm_path_does_no_file_io_and_no_http(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = make_token(clock(), lifetime=3600)
    write_cache(cache_path, {ME: token})
    engine = make_engine(cache_path, clock)
    assert engine.access_token(NON_INTERACTIVE) == token.access_token

    def no_io(*args: object, **kwargs: object) -> Any:
        raise AssertionError("the warm path touched the file system")

    monkeypatch.setattr(FileStore, "read", no_io)
    monkeypatch.setattr(FileStore, "transaction", no_io)
    monkeypatch.setattr(Path, "read_bytes", no_io)
    monkeypatch.setattr(Path, "stat", no_io)
    monkeypatch.setattr(filelock.FileLock, "acquire", no_io)
    for _ in range(1000):
        assert engine.access_token(NON_INTERACTIVE) == token.access_token
        clock.advance(1)  # 1000 s: still before the token is due (3600 - 60)
    assert len(server.mock.calls) == 0


def test_another_engine_for_the_same_identity_shares_the_memory_token(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    token = make_token(clock(), lifetime=3600)
    write_cache(cache_path, {ME: token})
    make_engine(cache_path, clock).access_token(NON_INTERACTIVE)
    cache_path.unlink()
    assert make_engine(cache_path, clock).access_token(NON_INTERACTIVE) == token.access_token


def test_fresh_token_in_the_cache_is_adopted_without_http(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    token = make_token(clock(), lifetime=300, obtained_ago=100)
    write_cache(cache_path, {ME: token})
    assert make_engine(cache_path, clock).access_token(NON_INTERACTIVE) == token.access_token
    assert len(server.mock.calls) == 0  # no discovery, no token request


def test_newer_token_written_by_another_process_is_adopted(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    first = make_token(clock(), lifetime=300)
    write_cache(cache_path, {ME: first})
    engine = make_engine(cache_path, clock)
    assert engine.access_token(NON_INTERACTIVE) == first.access_token
    clock.advance(290)
    second = make_token(clock(), lifetime=300)
    write_cache(cache_path, {ME: second})
    assert engine.access_token(NON_INTERACTIVE) == second.access_token
    assert len(server.mock.calls) == 0


def test_expired_token_is_refreshed_with_the_refresh_token_in_the_file(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    first = make_token(clock(), lifetime=300)
    write_cache(cache_path, {ME: first}, server_metadata=metadata())
    engine = make_engine(cache_path, clock)
    assert engine.access_token(NON_INTERACTIVE) == first.access_token
    # Another process refreshed (rotating the refresh token) and its access token is now expired too.
    clock.advance(600)
    rotated = make_token(clock(), lifetime=300, obtained_ago=400)
    write_cache(cache_path, {ME: rotated}, server_metadata=metadata())
    body = server.grant(refresh=False)
    assert engine.access_token(NON_INTERACTIVE) == body["access_token"]
    assert refreshes(server) == [rotated.refresh_token]
    assert str(first.refresh_token) not in str(server.token_requests)
    stored = cached_token(cache_path)
    assert stored is not None
    assert stored.access_token == body["access_token"]
    assert stored.refresh_token == rotated.refresh_token  # the response had none: kept
    assert stored.expires_at == clock() + 300


def test_refresh_sends_client_id_and_no_scope(server: FakeAuthServer, clock: FakeClock, cache_path: Path) -> None:
    write_cache(cache_path, {(ISSUER, CLIENT_ID, "openid"): make_token(clock(), obtained_ago=1000)})
    server.grant()
    make_engine(cache_path, clock, scope="openid").access_token(NON_INTERACTIVE)
    (form,) = server.token_requests
    assert form["grant_type"] == "refresh_token"
    assert form["client_id"] == CLIENT_ID
    assert "scope" not in form


def test_rotated_refresh_token_is_written_back(server: FakeAuthServer, clock: FakeClock, cache_path: Path) -> None:
    write_cache(cache_path, {ME: make_token(clock(), obtained_ago=1000)})
    body = server.grant()
    make_engine(cache_path, clock).access_token(NON_INTERACTIVE)
    stored = cached_token(cache_path)
    assert stored is not None
    assert stored.refresh_token == body["refresh_token"]
    assert stored.refresh_expires_at == clock() + 1800


def test_refresh_keeps_other_identities(server: FakeAuthServer, clock: FakeClock, cache_path: Path) -> None:
    other = make_token(clock(), lifetime=3600)
    write_cache(cache_path, {ME: make_token(clock(), obtained_ago=1000), OTHER: other})
    server.grant()
    make_engine(cache_path, clock).access_token(NON_INTERACTIVE)
    assert cached_token(cache_path, OTHER[2]) == other


def test_refresh_with_invalid_grant_clears_the_entry_and_requires_login(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    other = make_token(clock(), lifetime=3600)
    write_cache(cache_path, {ME: make_token(clock(), obtained_ago=1000), OTHER: other})
    server.token_answers.append(oauth_error("invalid_grant", description="Token is not active"))
    with pytest.raises(LoginRequired) as caught:
        make_engine(cache_path, clock).access_token(NON_INTERACTIVE)
    assert f"deviceauth login --issuer {ISSUER} --client-id {CLIENT_ID}" in str(caught.value)
    assert getattr(caught.value, "issuer", None) == ISSUER
    assert getattr(caught.value, "client_id", None) == CLIENT_ID
    assert cached_token(cache_path) is None
    assert cached_token(cache_path, OTHER[2]) == other
    assert len(server.token_requests) == 1


def test_refresh_rejected_then_interactive_login(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, shown: list[DeviceCode]
) -> None:
    write_cache(cache_path, {ME: make_token(clock(), obtained_ago=1000)})
    server.token_answers.append(oauth_error("invalid_grant"))
    server.device(interval=1)
    body = server.grant()
    assert make_engine(cache_path, clock).access_token(interactive(shown)) == body["access_token"]
    assert len(shown) == 1


def test_clear_after_rejection_only_if_the_store_still_holds_the_failed_refresh_token(
    clock: FakeClock, cache_path: Path
) -> None:
    store = FileStore(cache_path)
    newer = make_token(clock())
    write_cache(cache_path, {ME: newer})
    with store.transaction(Identity(*ME)) as txn:
        assert not isinstance(txn, Written)
        assert not txn.delete(unless_changed_from="rt-that-failed")
    assert cached_token(cache_path) == newer
    with store.transaction(Identity(*ME)) as txn:
        assert not isinstance(txn, Written)
        assert txn.delete(unless_changed_from=newer.refresh_token)
    assert cached_token(cache_path) is None


def test_refresh_token_past_its_expiry_is_not_sent(server: FakeAuthServer, clock: FakeClock, cache_path: Path) -> None:
    stale = make_token(clock(), obtained_ago=4000, refresh_expires_at=clock() - 1)
    write_cache(cache_path, {ME: stale})
    with pytest.raises(LoginRequired):
        make_engine(cache_path, clock).access_token(NON_INTERACTIVE)
    assert server.token_requests == []


def test_no_refresh_token_goes_straight_to_login(server: FakeAuthServer, clock: FakeClock, cache_path: Path) -> None:
    write_cache(cache_path, {ME: make_token(clock(), obtained_ago=1000, refresh=False)})
    with pytest.raises(LoginRequired):
        make_engine(cache_path, clock).access_token(NON_INTERACTIVE)
    assert server.token_requests == []


def test_transient_refresh_failure_after_expiry_propagates_and_keeps_the_entry(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    stale = make_token(clock(), obtained_ago=1000)  # lifetime 300 s: expired
    write_cache(cache_path, {ME: stale})
    server.token_answers.append(requests.ConnectionError("down"))
    with pytest.raises(ServerError) as caught:
        make_engine(cache_path, clock).access_token(NON_INTERACTIVE)
    assert caught.value.transient
    assert cached_token(cache_path) == stale


def test_malformed_entry_is_ignored(server: FakeAuthServer, clock: FakeClock, cache_path: Path) -> None:
    cache_path.parent.mkdir(parents=True)
    key = identity_key(ISSUER, CLIENT_ID, None)
    cache_path.write_text(json.dumps({"version": 1, "identities": {key: {"token": {"access_token": "x"}}}}))
    with pytest.raises(LoginRequired):
        make_engine(cache_path, clock).access_token(NON_INTERACTIVE)


# -- discovery metadata -----------------------------------------------------------------------------


def test_metadata_is_stored_in_the_cache_and_reused(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, shown: list[DeviceCode]
) -> None:
    server.device(interval=1)
    server.grant()
    make_engine(cache_path, clock).access_token(interactive(shown))
    assert server.calls_to(DISCOVERY_URL) == 1
    assert read_cache(cache_path)["servers"][ISSUER]["metadata"] == metadata()
    # A new process: nothing in memory; the token is due; the refresh needs the token endpoint.
    from deviceauth import _process

    _process.clear()
    clock.advance(1000)
    body = server.grant()
    assert make_engine(cache_path, clock).access_token(NON_INTERACTIVE) == body["access_token"]
    assert server.calls_to(DISCOVERY_URL) == 1


def test_refresh_without_stored_metadata_discovers_once(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    write_cache(cache_path, {ME: make_token(clock(), obtained_ago=1000)})
    server.grant()
    engine = make_engine(cache_path, clock)
    engine.access_token(NON_INTERACTIVE)
    clock.advance(1000)
    server.grant()
    engine.access_token(NON_INTERACTIVE)
    assert server.calls_to(DISCOVERY_URL) == 1
    assert len(server.token_requests) == 2


# -- 401 from the API -------------------------------------------------------------------------------


def test_replace_rejected_refreshes_a_token_that_is_valid_by_the_clock(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    token = make_token(clock(), lifetime=3600)
    write_cache(cache_path, {ME: token})
    engine = make_engine(cache_path, clock)
    assert engine.access_token(NON_INTERACTIVE) == token.access_token
    body = server.grant()
    fresh = engine.replace_rejected(token.access_token, NON_INTERACTIVE)
    assert fresh == body["access_token"] != token.access_token
    assert refreshes(server) == [token.refresh_token]
    assert engine.access_token(NON_INTERACTIVE) == fresh


def test_replace_rejected_adopts_a_different_token_another_process_wrote(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    token = make_token(clock(), lifetime=3600)
    write_cache(cache_path, {ME: token})
    engine = make_engine(cache_path, clock)
    engine.access_token(NON_INTERACTIVE)
    newer = make_token(clock(), lifetime=3600)
    write_cache(cache_path, {ME: newer})
    assert engine.replace_rejected(token.access_token, NON_INTERACTIVE) == newer.access_token
    assert server.token_requests == []


def test_replace_rejected_for_an_old_token_returns_the_current_one(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    token = make_token(clock(), lifetime=3600)
    write_cache(cache_path, {ME: token})
    engine = make_engine(cache_path, clock)
    engine.access_token(NON_INTERACTIVE)
    assert engine.replace_rejected("at-some-older-token", NON_INTERACTIVE) == token.access_token
    assert server.token_requests == []


def test_threads_refresh_once(server: FakeAuthServer, clock: FakeClock, cache_path: Path) -> None:
    write_cache(cache_path, {ME: make_token(clock(), obtained_ago=1000)}, server_metadata=metadata())
    body = server.grant()
    engine = make_engine(cache_path, clock)
    results: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(engine.access_token(NON_INTERACTIVE))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert results == [body["access_token"]] * 8
    assert len(server.token_requests) == 1


# -- logout -----------------------------------------------------------------------------------------


def test_logout_removes_the_entry_keeps_others_and_revokes(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    mine, other = make_token(clock()), make_token(clock())
    write_cache(cache_path, {ME: mine, OTHER: other})
    engine = make_engine(cache_path, clock)
    engine.access_token(NON_INTERACTIVE)
    assert engine.logout() == (True, True)
    assert cached_token(cache_path) is None
    assert cached_token(cache_path, OTHER[2]) == other
    revoked = {(form["token"], form.get("token_type_hint")) for form in server.revocations}
    assert revoked == {(mine.refresh_token, "refresh_token"), (mine.access_token, "access_token")}
    # Memory is forgotten too: the next call has nothing to use.
    with pytest.raises(LoginRequired):
        engine.access_token(NON_INTERACTIVE)
    assert engine.logout() == (False, False)


def test_logout_without_revocation_endpoint_only_forgets(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    write_cache(cache_path, {ME: make_token(clock())}, server_metadata=metadata(revocation_endpoint=None))
    assert make_engine(cache_path, clock).logout() == (True, False)  # removed, not revoked
    assert server.revocations == []
    assert server.calls_to(REVOCATION_ENDPOINT) == 0


def test_logout_without_revoke(server: FakeAuthServer, clock: FakeClock, cache_path: Path) -> None:
    write_cache(cache_path, {ME: make_token(clock())})
    assert make_engine(cache_path, clock).logout(revoke=False) == (True, False)
    assert len(server.mock.calls) == 0


def test_logout_when_revocation_fails_still_forgets(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_cache(cache_path, {ME: make_token(clock())})
    server.mock.replace("POST", REVOCATION_ENDPOINT, status=503)
    assert make_engine(cache_path, clock).logout() == (True, False)  # forgotten here, not confirmed there
    assert cached_token(cache_path) is None
    assert "could not revoke" in caplog.text


def test_cached_token_reads_without_refreshing(server: FakeAuthServer, clock: FakeClock, cache_path: Path) -> None:
    stale = make_token(clock(), obtained_ago=1000)
    write_cache(cache_path, {ME: stale})
    engine = make_engine(cache_path, clock)
    assert engine.cached_token() == stale
    assert isinstance(engine.cached_token(), Token)
    assert len(server.mock.calls) == 0


def test_offline_token_is_used_when_nothing_is_cached(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    from deviceauth._settings import Settings

    body = server.grant(refresh_expires_in=0)
    settings = Settings(issuer=ISSUER, client_id=CLIENT_ID, offline_token="offline-SECRET")
    engine = TokenEngine(settings, FileStore(cache_path), clock=clock, sleep=clock.sleep)
    assert engine.access_token(NON_INTERACTIVE) == body["access_token"]
    assert refreshes(server) == ["offline-SECRET"]
    stored = cached_token(cache_path)
    assert stored is not None
    assert stored.refresh_token is None  # not stored unless asked


def test_token_endpoint_answer_without_access_token_is_an_error(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path
) -> None:
    write_cache(cache_path, {ME: make_token(clock(), obtained_ago=1000)})
    bad = token_body()
    del bad["access_token"]
    server.token_answers.append((200, bad))
    with pytest.raises(Exception) as caught:  # noqa: PT011 - which class is the point of the check below
        make_engine(cache_path, clock).access_token(NON_INTERACTIVE)
    assert isinstance(caught.value, ServerError), f"raised {type(caught.value).__name__}, not a ServerError"


def test_engines_with_different_tls_settings_do_not_share_a_client(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deviceauth._settings import Settings

    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # see the next test
        monkeypatch.delenv(name, raising=False)

    write_cache(cache_path, {ME: make_token(clock(), obtained_ago=1000)}, server_metadata=metadata())
    server.grant()
    server.grant()
    first = TokenEngine(Settings(ISSUER, CLIENT_ID), FileStore(cache_path), clock=clock, sleep=clock.sleep)
    first.access_token(NON_INTERACTIVE)
    clock.advance(1000)
    second = TokenEngine(
        Settings(ISSUER, CLIENT_ID, verify="/etc/ssl/corp-ca.pem"),
        FileStore(cache_path),
        clock=clock,
        sleep=clock.sleep,
    )
    second.access_token(NON_INTERACTIVE)
    verify = [call.request.req_kwargs["verify"] for call in server.mock.calls if call.request.url == TOKEN_ENDPOINT]  # type: ignore[attr-defined]
    assert verify == [True, "/etc/ssl/corp-ca.pem"]


@pytest.mark.parametrize("verify", [False, "/etc/ssl/corp-ca.pem"])
def test_verify_setting_wins_over_requests_ca_bundle(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, monkeypatch: pytest.MonkeyPatch, verify: bool | str
) -> None:
    from deviceauth._settings import Settings

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/env-bundle.pem")
    write_cache(cache_path, {ME: make_token(clock(), obtained_ago=1000)}, server_metadata=metadata())
    server.grant()
    engine = TokenEngine(
        Settings(ISSUER, CLIENT_ID, verify=verify), FileStore(cache_path), clock=clock, sleep=clock.sleep
    )
    engine.access_token(NON_INTERACTIVE)
    (call,) = [call for call in server.mock.calls if call.request.url == TOKEN_ENDPOINT]
    assert call.request.req_kwargs["verify"] == verify  # type: ignore[attr-defined]


def test_fresh_token_in_the_file_is_used_while_another_process_holds_the_lock(
    server: FakeAuthServer, clock: FakeClock, cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deviceauth import _filestore as _cache
    from deviceauth._settings import Settings

    monkeypatch.setattr(_cache, "_LONGEST_WAIT", 0.05)
    monkeypatch.setattr(_cache, "_LOGIN_CHECK_EVERY", 0.05)
    token = make_token(clock(), lifetime=300)
    write_cache(cache_path, {ME: token})
    holder = filelock.FileLock(FileStore(cache_path).lock_path, thread_local=False)
    holder.acquire()
    try:
        settings = Settings(ISSUER, CLIENT_ID, lock_timeout=0.2)
        engine = TokenEngine(settings, FileStore(cache_path, lock_timeout=0.2), clock=clock, sleep=clock.sleep)
        assert engine.access_token(NON_INTERACTIVE) == token.access_token
    finally:
        holder.release()
    assert len(server.mock.calls) == 0
