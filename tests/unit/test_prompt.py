"""Showing the code to a person, and deciding whether a browser or a person is there."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import sys
import time
import webbrowser

import pytest

from deviceauth import DeviceCode
from deviceauth._flow import Outcome
from deviceauth._prompt import (
    browser_usable,
    default_prompt,
    is_interactive,
    make_prompt,
    qr_lines,
    qr_svg,
    show_prompt,
)

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


# -- the terminal: QR code and one live line -------------------------------------------------------------

SGR = re.compile(r"\x1b\[[0-9;]*m")


class FakeTTY(io.StringIO):
    """A stderr that says it is a terminal, with the encoding a terminal would have."""

    def __init__(self, encoding: str = "utf-8") -> None:
        super().__init__()
        self._encoding = encoding

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding

    def isatty(self) -> bool:
        return True


@pytest.fixture
def tty(monkeypatch: pytest.MonkeyPatch) -> FakeTTY:
    stream = FakeTTY()
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=(80, 24): os.terminal_size((120, 40)))
    return stream


def qr_rows(text: str) -> list[str]:
    return [SGR.sub("", line)[2:] for line in text.split("\n") if "\x1b[97;40m" in line]


def decode_half_blocks(rows: list[str]) -> list[list[bool]]:
    """Back from characters to modules (True = dark), two module rows per character row."""
    top = {"█": (False, False), "▀": (False, True), "▄": (True, False), " ": (True, True)}
    matrix: list[list[bool]] = []
    for row in rows:
        pairs = [top[ch] for ch in row]
        matrix.append([pair[0] for pair in pairs])
        matrix.append([pair[1] for pair in pairs])
    return matrix


def test_terminal_prompt_draws_the_link_as_a_qr_code(tty: FakeTTY) -> None:
    import segno

    show_prompt(CODE, tty)
    rows = qr_rows(tty.getvalue())
    expected = [[bool(m) for m in row] for row in segno.make(CODE.url, error="l", micro=False).matrix_iter(border=2)]
    decoded = decode_half_blocks(rows)[: len(expected)]
    assert decoded == expected
    assert "or scan this QR code with your phone" in tty.getvalue()
    assert f"enter the code {CODE.user_code}" in tty.getvalue()


def test_terminal_live_line_rewrites_one_line_and_ends_it(tty: FakeTTY) -> None:
    status = show_prompt(CODE, tty)
    before = tty.getvalue()
    status.tick(581.2)
    status.tick(580.2)
    status.tick(9.5)
    status.done("approved")
    live = tty.getvalue()[len(before) :]
    assert live.count("\n") == 1 and live.endswith("\n")
    frames = live.rstrip("\n").split("\r")
    assert frames[0] == "Waiting for approval… 9:42 left"
    assert frames[1] == "Waiting for approval… 9:41 left"
    assert frames[2] == "Waiting for approval… 0:10 left"
    assert frames[3].rstrip() == "Signed in."
    assert len(frames[3]) >= len(frames[0]) + 2  # blanks out the longest frame and an echoed ^C


@pytest.mark.parametrize(
    ("outcome", "text"),
    [
        ("denied", "Sign-in denied."),
        ("expired", "The sign-in code expired."),
        ("cancelled", "Sign-in cancelled."),
        ("failed", "Sign-in failed."),
    ],
)
def test_terminal_live_line_ends_cleanly_whatever_the_outcome(tty: FakeTTY, outcome: Outcome, text: str) -> None:
    status = show_prompt(CODE, tty)
    status.tick(100)
    status.done(outcome)
    assert tty.getvalue().endswith("\n")
    assert tty.getvalue().rstrip().endswith(text)


def test_without_segno_there_is_no_qr_code_and_no_error(tty: FakeTTY, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "segno", None)  # import segno raises ImportError
    show_prompt(CODE, tty).done("approved")
    assert "\x1b" not in tty.getvalue()
    assert "QR" not in tty.getvalue()
    assert CODE.user_code in tty.getvalue()


@pytest.mark.parametrize("setting", ["narrow", "dumb", "ascii"])
def test_no_qr_code_where_it_cannot_be_drawn(monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    stream = FakeTTY("ascii" if setting == "ascii" else "utf-8")
    monkeypatch.setenv("TERM", "dumb" if setting == "dumb" else "xterm")
    columns = 30 if setting == "narrow" else 120
    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=(80, 24): os.terminal_size((columns, 40)))
    status = show_prompt(CODE, stream)
    status.tick(60)
    assert "QR" not in stream.getvalue()
    assert "▀" not in stream.getvalue()
    if setting == "ascii":
        assert "Waiting for approval... 1:00 left" in stream.getvalue()


def test_no_color_draws_without_escape_sequences(tty: FakeTTY, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    show_prompt(CODE, tty)
    assert "\x1b" not in tty.getvalue()
    assert "▀" in tty.getvalue() or "▄" in tty.getvalue()


def test_qr_helpers_refuse_non_web_links() -> None:
    assert qr_lines("javascript:alert(1)") is None
    assert qr_svg("file:///etc/passwd") is None
    svg = qr_svg(CODE.url)
    assert svg is not None and svg.startswith("<svg")


def test_plain_output_has_no_live_line_but_reminders_and_an_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    status = show_prompt(CODE, stream)
    for remaining in (600, 590, 480, 470, 360):
        status.tick(remaining)
    status.done("approved")
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert "\x1b" not in stream.getvalue()
    assert lines[-3:] == [
        "  Still waiting for approval (8:00 left)...",
        "  Still waiting for approval (6:00 left)...",
        "Signed in.",
    ]


def test_a_closed_stderr_does_not_break_the_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = FakeTTY()
    status = show_prompt(CODE, stream)
    stream.close()
    status.tick(10)
    status.done("approved")
