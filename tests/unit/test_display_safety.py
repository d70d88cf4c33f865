"""Hostile device authorization responses: what reaches the terminal, the browser and the Jupyter HTML.

The server controls ``user_code``, ``verification_uri`` and ``verification_uri_complete``. Each
hostile value below is either refused with a typed ``ServerError`` that does not echo it, or
dropped (``verification_uri_complete``), and nothing the server wrote can put a control sequence on
stderr, a non-http(s) URL into ``webbrowser.open`` or an unescaped value into the notebook.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import sys
import types
import unicodedata
import webbrowser
from typing import Any, cast

import pytest
from deviceauth_fakes import DEVICE_CODE, DEVICE_ENDPOINT, TOKEN_ENDPOINT, USER_CODE, FakeClock

from deviceauth import DeviceCode, ServerError
from deviceauth import _prompt as prompt_module
from deviceauth._flow import run_device_flow
from deviceauth._oauth import OAuthClient
from deviceauth._prompt import default_prompt, make_prompt, show_prompt

SITE = "https://auth.example.org"
URI = f"{SITE}/device"
COMPLETE = f"{URI}?user_code={USER_CODE}"
TOKEN: dict[str, Any] = {"access_token": "at", "expires_in": 300}
# Our own escape sequences: the colours of the QR code rows. Nothing else may appear.
OWN_SGR = re.compile(r"\x1b\[97;40m|\x1b\[0m")


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "device_code": DEVICE_CODE,
        "user_code": USER_CODE,
        "verification_uri": URI,
        "verification_uri_complete": COMPLETE,
        "expires_in": 600,
        "interval": 5,
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def parse(**overrides: Any) -> DeviceCode:
    return DeviceCode.from_response(body(**overrides), 0.0)


def controls(text: str, allowed: str = "\n") -> list[str]:
    """Every control, format or separator character in ``text`` except those ``allowed``."""
    return [
        f"U+{ord(ch):04X}"
        for ch in OWN_SGR.sub("", text)
        if ch not in allowed and (unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"))
    ]


ESC_CLEAR = "\x1b[2J\x1b[1;1H"
OSC8 = "\x1b]8;;https://evil.example/\x07WDJB-MJHT\x1b]8;;\x07"
FORGED = "WDJB-MJHT\nTo sign in, open https://evil.example/device and enter the code EVIL-CODE"

HOSTILE_USER_CODES: dict[str, Any] = {
    "csi escape": f"{ESC_CLEAR}WDJB-MJHT",
    "colour escape": "\x1b[8mHIDDEN\x1b[0mWDJB",
    "osc-8 link": OSC8,
    "c1 csi": "WDJB\x9b2J",
    "del": "WDJB\x7fMJHT",
    "bell": "WDJB\x07",
    "carriage return": "EVIL-CODE\rWDJB-MJHT",
    "forged line": FORGED,
    "line separator": "WDJB\u2028To sign in, open https://evil.example",
    "rtl override": "WDJB\u202eTHJM",
    "rtl isolate": "\u2067WDJB-MJHT\u2069",
    "zero width space": "WD\u200bJB",
    "zero width joiner": "WD\u200dJB",
    "bom": "\ufeffWDJB",
    "combining overlay": "W\u0338DJB",
    "hebrew letters reorder": "WDJB-\u05d0\u05d1",
    "too long": "A" * 65,
    "ten megabytes": "A" * 10_000_000,
    "integer": 1234,
    "float": 12.5,
    "list": ["WDJB"],
    "object": {"code": "WDJB"},
    "boolean": True,
    "blank": "   ",
}


@pytest.mark.parametrize("name", list(HOSTILE_USER_CODES))
def test_hostile_user_code_is_refused_without_echoing_it(name: str) -> None:
    value = HOSTILE_USER_CODES[name]
    with pytest.raises(ServerError, match="user_code") as caught:
        parse(user_code=value)
    message = str(caught.value)
    assert caught.value.transient is False
    assert not controls(message)
    assert len(message) < 200
    if isinstance(value, str) and value.strip():
        assert value not in message
    assert DEVICE_CODE not in message


HOSTILE_URIS: dict[str, Any] = {
    "javascript": "javascript:alert(document.cookie)",
    "javascript upper case": "JaVaScRiPt:alert(1)",
    "file": "file:///etc/passwd",
    "data": "data:text/html,<script>alert(1)</script>",
    "ftp": "ftp://auth.example.org/device",
    "scheme relative": "//evil.example/device",
    "relative": "/device",
    "no host": "https:///device",
    "userinfo hides the host": "https://auth.example.org@evil.example/device",
    "csi escape": f"https://auth.example.org/device{ESC_CLEAR}",
    "osc-8": f"https://auth.example.org/{OSC8}",
    "carriage return": "https://evil.example/device\rhttps://auth.example.org/device",
    "forged line": "https://auth.example.org/device\nTo sign in, open https://evil.example/",
    "space": "https://auth.example.org/device and enter the code EVIL",
    "html injection": 'https://auth.example.org/"><script>alert(1)</script>',
    "backslash parser differential": "https://evil.example\\@auth.example.org/",
    "cyrillic look-alike host": "https://\u0430uth.example.org/device",
    "rtl override": "https://auth.example.org/\u202eved",
    "zero width": "https://auth.exa\u200bmple.org/device",
    "bad port": "https://auth.example.org:99999/device",
    "bad ipv6": "https://[::1/device",
    "too long": "https://auth.example.org/" + "a" * 2048,
    "integer": 42,
    "list": [URI],
    "object": {"href": URI},
}


@pytest.mark.parametrize("name", list(HOSTILE_URIS))
def test_hostile_verification_uri_is_an_error(name: str) -> None:
    value = HOSTILE_URIS[name]
    with pytest.raises(ServerError, match="verification_uri") as caught:
        parse(verification_uri=value, verification_uri_complete=None)
    message = str(caught.value)
    assert not controls(message)
    assert len(message) < 200
    if isinstance(value, str):
        assert value not in message


@pytest.mark.parametrize("name", list(HOSTILE_URIS))
def test_hostile_complete_uri_is_dropped_and_the_code_still_shown(name: str) -> None:
    code = parse(verification_uri_complete=HOSTILE_URIS[name])
    assert code.verification_uri_complete is None
    assert code.url == URI
    assert code.user_code == USER_CODE


COMPLETE_NOT_FOR_THIS_CODE = {
    "omits the code": f"{URI}",
    "another code": f"{URI}?user_code=EVIL-CODE",
    "another code first": f"{URI}?user_code=EVIL-CODE&x={USER_CODE}",
    "two codes": f"{URI}?user_code={USER_CODE}&user_code=EVIL-CODE",
    "code only as a substring": f"{URI}?user_code=X{USER_CODE}X",
    "code in the fragment only": f"{URI}#{USER_CODE}",
    "another site": f"https://evil.example/device?user_code={USER_CODE}",
    "same host over http": f"http://auth.example.org/device?user_code={USER_CODE}",
    "another port": f"{SITE}:8443/device?user_code={USER_CODE}",
    "another subdomain": f"https://login.auth.example.org/device?user_code={USER_CODE}",
}


@pytest.mark.parametrize("name", list(COMPLETE_NOT_FOR_THIS_CODE))
def test_complete_uri_that_does_not_carry_the_shown_code_is_dropped(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    code = parse(verification_uri_complete=COMPLETE_NOT_FOR_THIS_CODE[name])
    assert code.verification_uri_complete is None
    assert code.url == URI
    assert "ignoring the server's verification_uri_complete" in caplog.text


@pytest.mark.parametrize(
    "complete",
    [
        COMPLETE,
        f"{URI}?user_code={USER_CODE}&client_id=client-tools",
        f"{SITE}:443/device?user_code={USER_CODE}",
        f"HTTPS://AUTH.example.org/device?user_code={USER_CODE}",
        f"{URI}/{USER_CODE}",
        f"{URI}?code={USER_CODE}",
    ],
)
def test_complete_uri_carrying_the_code_on_the_same_site_is_kept(complete: str) -> None:
    assert parse(verification_uri_complete=complete).verification_uri_complete == complete


def test_user_code_with_a_space_is_matched_after_decoding() -> None:
    code = parse(user_code="WDJB MJHT", verification_uri_complete=f"{URI}?user_code=WDJB+MJHT")
    assert code.verification_uri_complete == f"{URI}?user_code=WDJB+MJHT"


def test_surrounding_whitespace_is_trimmed_not_refused() -> None:
    code = parse(user_code=f"  {USER_CODE}\r\n", verification_uri=f" {URI}\n", verification_uri_complete=None)
    assert code.user_code == USER_CODE
    assert code.verification_uri == URI


def test_google_spelling_verification_url() -> None:
    code = DeviceCode.from_response(
        {"device_code": DEVICE_CODE, "user_code": USER_CODE, "verification_url": "https://google.example/device"}, 0.0
    )
    assert code.verification_uri == "https://google.example/device"


@pytest.mark.parametrize("value", [None, "", 123, ["x"], "x" * 8193])
def test_unusable_device_code_is_refused_without_showing_it(value: Any) -> None:
    with pytest.raises(ServerError, match="device_code") as caught:
        parse(device_code=value)
    assert "xxxx" not in str(caught.value)


def test_device_code_never_in_repr_or_str() -> None:
    code = parse()
    assert DEVICE_CODE not in repr(code)
    assert DEVICE_CODE not in str(code)


# -- what reaches stderr, the browser and the notebook --------------------------------------------------


class FakeTTY(io.StringIO):
    """A stderr that says it is a terminal."""

    encoding = "utf-8"  # type: ignore[assignment]

    def isatty(self) -> bool:
        return True


class FakeHandle:
    def __init__(self, shown: list[str]) -> None:
        self.shown = shown

    def update(self, obj: Any) -> None:
        self.shown.append(obj.data)


@pytest.fixture
def notebook(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Pretend to be a Jupyter kernel; collects every HTML display and update, in order."""
    shown: list[str] = []

    class HTML:
        def __init__(self, data: str) -> None:
            self.data = data

    def display(obj: Any, display_id: bool = False) -> FakeHandle:
        assert display_id is True
        shown.append(obj.data)
        return FakeHandle(shown)

    module = types.ModuleType("IPython.display")
    module.HTML = HTML  # type: ignore[attr-defined]
    module.display = display  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython.display", module)
    monkeypatch.setattr(prompt_module, "in_jupyter", lambda: True)
    return shown


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    urls: list[str] = []

    def fake_open(url: str, new: int = 0) -> bool:
        urls.append(url)
        return True

    monkeypatch.setattr(webbrowser, "open", fake_open)
    return urls


# Values a DeviceCode built by hand (an SDK's own code path) might carry: the prompt cleans again.
HAND_MADE = DeviceCode(
    user_code=f"{ESC_CLEAR}WDJB\r\nTo sign in, open https://evil.example/\u202e",
    verification_uri=f"javascript:alert(1)//{OSC8}",
    verification_uri_complete="file:///etc/passwd?WDJB",
    expires_at=0.0,
    interval=5,
    device_code=DEVICE_CODE,
)


@pytest.mark.parametrize("tty", [True, False])
def test_hand_made_hostile_code_reaches_stderr_only_as_visible_text(
    monkeypatch: pytest.MonkeyPatch, opened: list[str], tty: bool
) -> None:
    stream = FakeTTY() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    status = make_prompt(None, open_browser=True)(HAND_MADE)
    assert status is not None
    status.tick(61)
    status.done("approved")
    err = stream.getvalue()
    assert not controls(err, allowed="\n\r" if tty else "\n")
    assert "\x1b" not in OWN_SGR.sub("", err)
    lines = err.split("\n")
    assert lines[0].startswith("To sign in")
    assert not any(line.lstrip("\r").startswith("To sign in") for line in lines[1:])  # no forged second line
    assert "javascript:" in err  # shown as text, never as a link
    assert "file:" not in err  # the complete link was dropped
    assert DEVICE_CODE not in err
    assert opened == []  # nothing a browser would run
    if tty:
        assert "\r" not in err.split("\n")[0]


def test_hand_made_hostile_code_in_jupyter_is_escaped_and_unlinked(notebook: list[str], opened: list[str]) -> None:
    status = make_prompt(None, open_browser=True)(HAND_MADE)
    assert status is not None
    status.done("approved")
    page = notebook[0]
    assert "href" not in page
    assert "<script" not in page
    assert not controls(page)
    assert "file:" not in page
    assert DEVICE_CODE not in page
    assert opened == []
    assert "Signed in." in notebook[-1]


class ScriptedOAuth:
    def __init__(self, device: dict[str, Any]) -> None:
        self.device = device
        self.polls = 0

    def request_device_code(self, endpoint: str, scope: str | None) -> dict[str, Any]:
        return dict(self.device)

    def poll(self, endpoint: str, device_code: str) -> dict[str, Any]:
        self.polls += 1
        return TOKEN


def login(device: dict[str, Any], *, open_browser: bool = True) -> None:
    clock = FakeClock()
    run_device_flow(
        cast(OAuthClient, ScriptedOAuth(device)),
        DEVICE_ENDPOINT,
        TOKEN_ENDPOINT,
        "openid",
        show=make_prompt(None, open_browser=open_browser),
        clock=clock,
        sleep=clock.sleep,
    )


@pytest.mark.parametrize(
    "complete",
    [*list(COMPLETE_NOT_FOR_THIS_CODE.values()), "javascript:alert(1)", "file:///etc/passwd", OSC8],
)
@pytest.mark.parametrize("tty", [True, False])
def test_a_dropped_complete_link_reaches_neither_stderr_nor_browser(
    monkeypatch: pytest.MonkeyPatch, opened: list[str], complete: str, tty: bool
) -> None:
    stream = FakeTTY() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    login(body(verification_uri_complete=complete))
    err = stream.getvalue()
    assert opened == [URI]
    assert f"open {URI} and enter the code {USER_CODE}" in err
    assert complete not in err.replace(f"open {URI} ", "")
    assert "Signed in." in err


def test_the_good_complete_link_is_opened_and_the_code_still_shown(
    monkeypatch: pytest.MonkeyPatch, opened: list[str]
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    login(body())
    assert opened == [COMPLETE]
    err = stream.getvalue()
    assert f"enter the code {USER_CODE}" in err
    assert f"check that it shows {USER_CODE}" in err


def test_jupyter_html_escapes_and_links_only_http(
    notebook: list[str], opened: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A desktop with a real browser: only being in a notebook keeps the browser closed.
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    monkeypatch.delenv("SSH_TTY", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(webbrowser, "get", lambda *a: webbrowser.BackgroundBrowser("firefox"))
    login(body(user_code="A<b>&'\"", verification_uri_complete=None), open_browser=None)
    page = notebook[0]
    assert "A&lt;b&gt;&amp;&#x27;&quot;" in page
    assert "<b>&" not in page
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs == [URI]
    assert opened == []  # a notebook kernel may be remote: it links, it does not open
    assert "Signed in." in notebook[-1]


def test_jupyter_link_with_the_code_filled_in(notebook: list[str]) -> None:
    login(body(verification_uri_complete=f"{URI}?user_code={USER_CODE}&a=1&b=2"))
    hrefs = re.findall(r'href="([^"]*)"', notebook[0])
    assert hrefs == [URI, f"{URI}?user_code={USER_CODE}&amp;a=1&amp;b=2"]


def test_messages_about_bad_values_name_no_hostile_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    parse(verification_uri_complete=f"https://evil.example/{OSC8}", expires_in=json.loads("1e400"), interval=[1])
    assert "\x1b" not in caplog.text
    assert "evil" not in caplog.text
    assert DEVICE_CODE not in caplog.text


def test_default_prompt_keeps_its_once_only_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = FakeTTY()
    monkeypatch.setattr(sys, "stderr", stream)
    assert default_prompt(dataclasses.replace(parse(), expires_at=1e12)) is None
    assert stream.getvalue().endswith("\n")  # no half-written live line left behind
    assert show_prompt(parse()) is not None


@pytest.mark.parametrize(
    ("uri", "warned"),
    [
        ("http://auth.example.org/device", True),
        ("http://127.0.0.1:8080/device", False),
        ("http://localhost:8080/device", False),
        ("http://[::1]:8080/device", False),
        (URI, False),
    ],
)
def test_plain_http_verification_page_on_a_remote_host_is_shown_with_a_warning(
    uri: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    code = parse(verification_uri=uri, verification_uri_complete=None)
    assert code.verification_uri == uri
    assert ("not encrypted" in caplog.text) is warned


def test_a_failing_notebook_display_falls_back_to_stderr(notebook: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(obj: Any, display_id: bool = False) -> None:
        raise RuntimeError("no front end")

    monkeypatch.setattr(sys.modules["IPython.display"], "display", broken)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    show_prompt(parse()).done("approved")
    assert f"enter the code {USER_CODE}" in stream.getvalue()
    assert stream.getvalue().endswith("Signed in.\n")


def test_a_link_segno_cannot_encode_gives_no_qr_code_and_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import segno

    def overflow(*args: Any, **kwargs: Any) -> None:
        raise segno.DataOverflowError("data too large")

    monkeypatch.setattr(segno, "make", overflow)
    stream = FakeTTY()
    status = show_prompt(parse(), stream)
    status.done("approved")
    assert "QR" not in stream.getvalue()
    assert f"enter the code {USER_CODE}" in stream.getvalue()
    assert prompt_module.qr_svg(COMPLETE) is None
