"""Showing the person where to approve the login, and deciding whether a person is there at all.

Three displays, picked where the login runs:

- a terminal (stderr is a TTY): the link and code, a QR code of the link for a phone (when
  ``segno`` is installed), then one live line "Waiting for approval… 9:41 left" rewritten in place
  with carriage returns and ended by a final line (signed in, denied, expired, cancelled);
- anything else (a log file, a pipe): the same text as plain lines, a reminder now and then, and
  the outcome as a last line;
- Jupyter: an HTML block (link, code, QR as inline SVG) that is replaced by the outcome.

Every field shown passes ``clean_text``/``web_url`` again (the flow already checked what the
server sent; this also covers a ``DeviceCode`` built by hand), and the Jupyter HTML escapes all of it.
"""

from __future__ import annotations

import contextlib
import html
import importlib
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from ._flow import MAX_URI, MAX_USER_CODE, DeviceCode, Outcome, WaitStatus, clean_text, web_url

__all__ = [
    "browser_usable",
    "default_prompt",
    "in_jupyter",
    "is_interactive",
    "make_prompt",
    "qr_lines",
    "qr_svg",
    "show_prompt",
]

log = logging.getLogger("deviceauth.prompt")

_OUTCOME: dict[str, str] = {
    "approved": "Signed in.",
    "denied": "Sign-in denied.",
    "expired": "The sign-in code expired.",
    "cancelled": "Sign-in cancelled.",
    "failed": "Sign-in failed.",
}
_REMIND_EVERY = 120.0  # plain output: a reminder line this often
_HALF_BLOCKS = "▀▄█"


def in_jupyter() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def is_interactive() -> bool:
    """A person can answer: stdin is a terminal, or we run in a Jupyter kernel."""
    return _isatty(sys.stdin) or in_jupyter()


def browser_usable(environ: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether opening a browser here would show it to the person at the keyboard.

    Not over SSH, not in CI, not on a Linux box without a display, not in a (possibly remote)
    notebook kernel, and not when the only browser is a console one that would take over
    the terminal the code is printed on.
    """
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if env.get("SSH_CONNECTION") or env.get("SSH_TTY") or env.get("CI"):
        return False
    if platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        return False
    if environ is None and in_jupyter():
        return False
    import webbrowser  # only when a browser may be opened: it loads subprocess and shlex

    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    console = isinstance(browser, webbrowser.GenericBrowser) and not isinstance(browser, webbrowser.BackgroundBrowser)
    return not console


def default_prompt(code: DeviceCode) -> None:
    """Print the link and the code on stderr (a rich display in Jupyter).

    The public, once-only form of the prompt, for applications that wrap it; when deviceauth
    shows its own prompt it also follows the wait (``show_prompt``).
    """
    show_prompt(code)


def show_prompt(code: DeviceCode, stream: TextIO | None = None) -> WaitStatus:
    """Show the prompt where the person is (a notebook, else ``stream``: stderr), and return what follows the wait."""
    if stream is None and in_jupyter():
        try:
            shown = _JupyterStatus.show(code)
        except Exception:  # an odd front end: the text prompt on stderr still works
            log.debug("the Jupyter display failed; showing the prompt on stderr", exc_info=True)
            shown = None
        if shown is not None:
            return shown
    stream = sys.stderr if stream is None else stream
    if _isatty(stream):
        return _TerminalStatus.show(stream, code)
    return _PlainStatus.show(stream, code)


def make_prompt(
    prompt: Callable[[DeviceCode], None] | None, open_browser: bool | None
) -> Callable[[DeviceCode], WaitStatus | None]:
    """The prompt the flow calls: the caller's own (its contract unchanged) or ours, plus the browser."""
    show: Callable[[DeviceCode], WaitStatus | None] = prompt or show_prompt
    if open_browser is False or (open_browser is None and not browser_usable()):
        return show

    def show_and_open(code: DeviceCode) -> WaitStatus | None:
        status = show(code)
        url = _link(code)
        if url is not None:  # never javascript:, file: or anything else a browser would run
            import webbrowser

            with contextlib.suppress(webbrowser.Error):
                webbrowser.open(url, new=2)
        return status

    return show_and_open


# -- what is shown -----------------------------------------------------------------------------------


class _Shown:
    """The fields of a code as they may be displayed."""

    def __init__(self, code: DeviceCode) -> None:
        self.user_code = clean_text(code.user_code, MAX_USER_CODE)
        self.uri = clean_text(code.verification_uri, MAX_URI)
        self.uri_link = web_url(code.verification_uri)
        complete = web_url(code.verification_uri_complete)
        # A link with the code filled in is offered only when it carries the code shown.
        self.complete = complete if complete and self.user_code and self.user_code in complete else None
        self.link = self.complete or self.uri_link
        self.minutes = max(1, round((code.expires_at - time.time()) / 60))


def _link(code: DeviceCode) -> str | None:
    return _Shown(code).link


def _intro(shown: _Shown) -> list[str]:
    return [f"To sign in, open {shown.uri} and enter the code {shown.user_code}"]


def _remaining(seconds: float) -> str:
    total = max(0, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _StreamWriter:
    """Writes to a text stream and stops quietly once the stream is gone (closed, broken pipe)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.broken = False

    def write(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.broken = True


class _PlainStatus:
    """Log-style lines for a stream that is not a terminal: no rewriting, no QR code."""

    tick_every = 30.0

    def __init__(self, stream: TextIO) -> None:
        self._out = _StreamWriter(stream)
        self._reminded: float | None = None

    @classmethod
    def show(cls, stream: TextIO, code: DeviceCode) -> _PlainStatus:
        shown = _Shown(code)
        lines = _intro(shown)
        if shown.complete:
            lines.append(f"  (or open {shown.complete} and check that it shows {shown.user_code})")
        lines.append(f"  The code expires in about {shown.minutes} min. Waiting for approval...")
        status = cls(stream)
        status._out.write("\n".join(lines) + "\n")
        return status

    def tick(self, remaining: float) -> None:
        if self._reminded is None:
            self._reminded = remaining
        elif self._reminded - remaining >= _REMIND_EVERY and remaining >= 1:
            self._reminded = remaining
            self._out.write(f"  Still waiting for approval ({_remaining(remaining)} left)...\n")

    def done(self, outcome: Outcome) -> None:
        self._out.write(_OUTCOME[outcome] + "\n")


class _TerminalStatus:
    """A terminal: the prompt, a QR code, and one live line we rewrite with carriage returns."""

    tick_every = 1.0

    def __init__(self, stream: TextIO) -> None:
        self._out = _StreamWriter(stream)
        self._ellipsis = "…" if _encodes(stream, "…") else "..."
        self._width = 0  # the longest live line written so far, to blank it out when it shrinks

    @classmethod
    def show(cls, stream: TextIO, code: DeviceCode) -> _TerminalStatus:
        shown = _Shown(code)
        lines = _intro(shown)
        if shown.complete:
            lines.append(f"  or open {shown.complete} and check that it shows {shown.user_code}")
        qr = _terminal_qr(stream, shown.link)
        if qr:
            lines.append("  or scan this QR code with your phone:")
            lines.extend("  " + row for row in qr)
        status = cls(stream)
        status._out.write("\n".join(lines) + "\n")
        return status

    def tick(self, remaining: float) -> None:
        self._line(f"Waiting for approval{self._ellipsis} {_remaining(remaining)} left")

    def done(self, outcome: Outcome) -> None:
        # Two more blanks than the widest line: covers the "^C" the terminal echoes on Ctrl-C.
        self._line(_OUTCOME[outcome], pad=2)
        self._out.write("\n")
        self._width = 0

    def _line(self, text: str, pad: int = 0) -> None:
        start = "\r" if self._width else ""
        self._out.write(start + text.ljust(self._width + (pad if self._width else 0)))
        self._width = max(self._width, len(text))


class _JupyterStatus:
    """Jupyter: an HTML block with a display id, updated in place as the wait goes."""

    tick_every = 5.0

    def __init__(self, handle: Any, html_class: Any, body: str, minutes: int) -> None:
        self._handle = handle
        self._html = html_class
        self._body = body
        self._minutes = minutes

    @classmethod
    def show(cls, code: DeviceCode) -> _JupyterStatus | None:
        try:
            # Any-typed on purpose: IPython is optional and its display functions are untyped.
            ipython_display: Any = importlib.import_module("IPython.display")
        except ImportError:
            return None
        HTML, display = ipython_display.HTML, ipython_display.display
        shown = _Shown(code)
        body = _jupyter_body(shown)
        status = cls(None, HTML, body, shown.minutes)
        waiting = f"Waiting for approval… about {shown.minutes} min left."
        handle = display(HTML(status._render(waiting)), display_id=True)
        if handle is None:
            return None
        status._handle = handle
        return status

    def tick(self, remaining: float) -> None:
        minutes = max(1, math.ceil(remaining / 60))
        if minutes != self._minutes:
            self._minutes = minutes
            self._handle.update(self._html(self._render(f"Waiting for approval… about {minutes} min left.")))

    def done(self, outcome: Outcome) -> None:
        text = html.escape(_OUTCOME[outcome])
        self._handle.update(self._html(f'<div class="deviceauth-login"><p><b>{text}</b></p></div>'))

    def _render(self, status: str) -> str:
        return f'<div class="deviceauth-login">{self._body}<p>{html.escape(status)}</p></div>'


def _jupyter_body(shown: _Shown) -> str:
    code = f"<b><code>{html.escape(shown.user_code)}</code></b>"
    uri = html.escape(shown.uri)
    if shown.uri_link:
        uri = f'<a href="{html.escape(shown.uri_link, quote=True)}" target="_blank" rel="noopener noreferrer">{uri}</a>'
    parts = [f"<p>To sign in, open {uri} and enter the code {code}.</p>"]
    svg = qr_svg(shown.link) if shown.link else None
    if shown.complete:
        href = html.escape(shown.complete, quote=True)
        more = " or scan this QR code with your phone" if svg else ""
        parts.append(
            f'<p>Or open <a href="{href}" target="_blank" rel="noopener noreferrer">'
            f"the link with the code filled in</a>{more}, and check that it shows {code}.</p>"
        )
    elif svg:
        parts.append("<p>Or scan this QR code with your phone.</p>")
    if svg:
        parts.append(f"<div>{svg}</div>")
    return "".join(parts)


# -- QR codes (segno is optional: without it, no QR code and no error) -----------------------------------


def qr_lines(url: str, *, color: bool = True) -> list[str] | None:
    """The QR code of ``url`` drawn with Unicode half blocks, two modules per character row.

    Light modules are drawn, dark ones left as background; with ``color`` the rows force white
    on black, so the code scans on dark and light terminals alike (without, it assumes a light
    foreground on a dark background, as most terminals are).
    """
    if web_url(url) is None:
        return None
    try:
        import segno
    except ImportError:
        return None
    try:
        qr = segno.make(url, error="l", micro=False)
    except Exception:  # segno.DataOverflowError and kin: no QR code rather than no prompt
        return None
    rows = [[bool(dark) for dark in row] for row in qr.matrix_iter(border=2)]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    glyphs = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}
    lines = []
    for top, bottom in zip(rows[0::2], rows[1::2], strict=True):
        row = "".join(glyphs[(not t, not b)] for t, b in zip(top, bottom, strict=True))
        lines.append(f"\x1b[97;40m{row}\x1b[0m" if color else row)
    return lines


def qr_svg(url: str) -> str | None:
    """The QR code of ``url`` as inline SVG (black on white), or None without segno."""
    if web_url(url) is None:
        return None
    try:
        import segno
    except ImportError:
        return None
    try:
        svg: str = segno.make(url, error="l", micro=False).svg_inline(scale=4, dark="#000", light="#fff")
    except Exception:  # segno.DataOverflowError and kin
        return None
    return svg


def _terminal_qr(stream: TextIO, url: str | None) -> list[str] | None:
    if url is None or os.environ.get("TERM") == "dumb" or not _encodes(stream, _HALF_BLOCKS):
        return None
    lines = qr_lines(url, color=not os.environ.get("NO_COLOR"))
    if not lines:
        return None
    width = len(lines[0]) if os.environ.get("NO_COLOR") else len(lines[0]) - len("\x1b[97;40m\x1b[0m")
    if width + 2 > shutil.get_terminal_size(fallback=(80, 24)).columns:
        return None  # a wrapped QR code does not scan
    return lines


def _isatty(stream: object) -> bool:
    try:
        return stream is not None and bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


def _encodes(stream: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True
