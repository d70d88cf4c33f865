"""Showing the code to a person, and deciding whether a browser or a person is there."""

from __future__ import annotations

import dataclasses
import io
import sys
import time
import webbrowser

import pytest

from deviceauth import DeviceCode
from deviceauth._prompt import browser_usable, default_prompt, is_interactive, make_prompt, show_prompt

CODE = DeviceCode(
    user_code="WDJB-MJHT",
    verification_uri="https://auth.example.org/device",
    verification_uri_complete="https://auth.example.org/device?user_code=WDJB-MJHT",
    expires_at=time.time() + 600,
    interval=5,
    device_code="devcode-SECRET",
)


@pytest.mark.parametrize(
    ("environ", "platform"),
    [
        ({"SSH_CONNECTION": "10.0.0.1 5000 10.0.0.2 22", "DISPLAY": ":0"}, "linux"),
        ({"SSH_TTY": "/dev/pts/1", "DISPLAY": ":0"}, "linux"),
        ({"SSH_CONNECTION": "10.0.0.1 5000 10.0.0.2 22"}, "darwin"),
        ({"CI": "true", "DISPLAY": ":0"}, "linux"),
        ({"CI": "1"}, "win32"),
        ({}, "linux"),
        ({"TERM": "xterm"}, "linux"),
    ],
)
def test_browser_not_usable(environ: dict[str, str], platform: str) -> None:
    assert browser_usable(environ, platform) is False


def test_browser_usable_with_a_display_and_a_gui_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webbrowser, "get", lambda *a: webbrowser.BackgroundBrowser("firefox"))
    assert browser_usable({"DISPLAY": ":0"}, "linux") is True
    assert browser_usable({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is True


def test_console_browser_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webbrowser, "get", lambda *a: webbrowser.GenericBrowser("lynx"))
    assert browser_usable({"DISPLAY": ":0"}, "linux") is False


def test_no_browser_at_all_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*args: object) -> webbrowser.BaseBrowser:
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "get", missing)
    assert browser_usable({"DISPLAY": ":0"}, "linux") is False


def test_default_prompt_prints_code_and_links_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    default_prompt(dataclasses.replace(CODE, expires_at=time.time() + 600))
    out, err = capsys.readouterr()
    assert out == ""
    assert CODE.user_code in err
    assert CODE.verification_uri in err
    assert CODE.verification_uri_complete is not None
    assert CODE.verification_uri_complete in err
    assert "10 min" in err
    assert "devcode-SECRET" not in err


def test_default_prompt_without_complete_uri(capsys: pytest.CaptureFixture[str]) -> None:
    code = DeviceCode("ABCD", "https://v.example/d", None, time.time() + 30, 5, "dc")
    default_prompt(code)
    err = capsys.readouterr().err
    assert "open https://v.example/d and enter the code ABCD" in err
    assert "1 min" in err


def test_make_prompt_without_browser_is_the_prompt_itself() -> None:
    def mine(code: DeviceCode) -> None:
        pass

    assert make_prompt(mine, open_browser=False) is mine
    assert make_prompt(None, open_browser=False) is show_prompt


def test_make_prompt_opens_the_complete_link_after_showing(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []

    def fake_open(url: str, new: int = 0) -> bool:
        events.append(f"open {url}")
        return True

    def prompt(code: DeviceCode) -> None:
        events.append(f"show {code.user_code}")

    monkeypatch.setattr(webbrowser, "open", fake_open)
    show = make_prompt(prompt, open_browser=True)
    show(CODE)
    assert events == [f"show {CODE.user_code}", f"open {CODE.verification_uri_complete}"]


def test_browser_failure_does_not_break_the_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(url: str, new: int = 0) -> bool:
        raise webbrowser.Error("no browser")

    shown: list[DeviceCode] = []
    monkeypatch.setattr(webbrowser, "open", broken)
    make_prompt(shown.append, open_browser=True)(CODE)
    assert shown == [CODE]


class FakeStdin(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_is_interactive_follows_stdin(monkeypatch: pytest.MonkeyPatch, tty: bool) -> None:
    monkeypatch.setattr(sys, "stdin", FakeStdin(tty))
    assert is_interactive() is tty


def test_no_stdin_is_not_interactive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", None)
    assert is_interactive() is False
