"""The default prompt in a real pseudo-terminal: a small login script against the test server.

What a person sees: the link and code, a QR code of the link (checked module by module against
segno), one live "Waiting for approval… 9:59 left" line rewritten in place, and a final line on
approval, denial or Ctrl-C. The server comes from the ``server`` fixture (conftest), which
only needs ``issuer``, ``approve()`` and ``deny()``.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
import segno

from oidc_server import OidcServer

LOGIN_SCRIPT = textwrap.dedent(
    """
    import sys

    import deviceauth

    auth = deviceauth.DeviceAuth(
        sys.argv[1], "client-tools", scope="openid", cache=sys.argv[2], interactive=True, open_browser=False
    )
    try:
        token = auth.get_token()
    except KeyboardInterrupt:
        print("SCRIPT: interrupted", flush=True)
        sys.exit(130)
    except deviceauth.AccessDenied:
        print("SCRIPT: denied", flush=True)
        sys.exit(3)
    print("SCRIPT: got a token" if token else "SCRIPT: no token", flush=True)
    """
)
LIVE = re.compile(r"Waiting for approval… (\d+:\d\d) left")
SGR = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def login(server: OidcServer, tmp_path: Path) -> Iterator[pexpect.spawn]:
    script = tmp_path / "login.py"
    script.write_text(LOGIN_SCRIPT)
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower() and key != "NO_COLOR"}
    env.update(TERM="xterm-256color", PYTHONUNBUFFERED="1", LANG="C.UTF-8", LC_ALL="C.UTF-8")
    child = pexpect.spawn(
        sys.executable,
        [str(script), server.issuer, str(tmp_path / ".tokens.json")],
        env=env,
        dimensions=(50, 140),
        encoding="utf-8",
        timeout=30,
    )
    child.logfile_read = transcript = _Transcript()
    child.transcript = transcript  # type: ignore[attr-defined]
    try:
        yield child
    finally:
        child.close(force=True)


class _Transcript:
    """Everything the terminal received, as text."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def flush(self) -> None:
        pass

    @property
    def text(self) -> str:
        return "".join(self.parts)


def wait_for_prompt(child: pexpect.spawn) -> str:
    child.expect(r"enter the code ([A-Z0-9-]+)\r\n")
    user_code = child.match.group(1)
    child.expect(LIVE)
    return str(user_code)


def two_live_frames(child: pexpect.spawn) -> tuple[str, str]:
    first = child.match.group(1)
    # The next frame comes after a carriage return on the same line, never after a newline.
    child.expect("\r" + LIVE.pattern)
    return first, child.match.group(1)


def decode_half_blocks(rows: list[str]) -> list[list[bool]]:
    pairs = {"█": (False, False), "▀": (False, True), "▄": (True, False), " ": (True, True)}
    matrix: list[list[bool]] = []
    for row in rows:
        cells = [pairs[ch] for ch in row]
        matrix.append([top for top, _ in cells])
        matrix.append([bottom for _, bottom in cells])
    return matrix


def test_terminal_prompt_shows_qr_live_line_and_signed_in(login: pexpect.spawn, server: OidcServer) -> None:
    user_code = wait_for_prompt(login)
    first, second = two_live_frames(login)
    assert first != second
    server.approve(user_code)
    login.expect(r"\rSigned in\. *\r\n")
    login.expect("SCRIPT: got a token")
    login.expect(pexpect.EOF)
    login.close()
    assert login.exitstatus == 0

    text = login.transcript.text  # type: ignore[attr-defined]
    link = re.search(r"or open (\S+) and check that it shows " + re.escape(user_code), text)
    assert link is not None
    assert user_code in link.group(1)
    # The QR code: our colour sequence on each row, decoded back to exactly segno's modules.
    rows = [SGR.sub("", line)[2:] for line in text.split("\r\n") if "\x1b[97;40m" in line]
    expected = [
        [bool(m) for m in row] for row in segno.make(link.group(1), error="l", micro=False).matrix_iter(border=2)
    ]
    assert decode_half_blocks(rows)[: len(expected)] == expected
    # ONE live line: from the first frame to "Signed in." there is no line break.
    live = text[text.index("Waiting for approval") : text.index("Signed in.")]
    assert "\n" not in live
    assert live.count("\r") >= 2
    assert "\x1b" not in live


def test_ctrl_c_ends_the_live_line_cleanly(login: pexpect.spawn) -> None:
    wait_for_prompt(login)
    login.sendintr()
    login.expect(r"\rSign-in cancelled\. *\r\n")
    login.expect("SCRIPT: interrupted")
    login.expect(pexpect.EOF)
    login.close()
    assert login.exitstatus == 130
    text = login.transcript.text  # type: ignore[attr-defined]
    assert "Traceback" not in text
    # The script's own line starts on a fresh line, not glued to the live line.
    assert re.search(r"Sign-in cancelled\. *\r\nSCRIPT: interrupted", text)


def test_denial_ends_the_live_line(login: pexpect.spawn, server: OidcServer) -> None:
    user_code = wait_for_prompt(login)
    server.deny(user_code)
    login.expect(r"\rSign-in denied\. *\r\n")
    login.expect("SCRIPT: denied")
    login.expect(pexpect.EOF)
    login.close()
    assert login.exitstatus == 3
