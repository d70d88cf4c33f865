"""Showing the person where to approve the login, and deciding whether a person is there at all."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import webbrowser
from collections.abc import Callable, Mapping

from ._flow import DeviceCode

__all__ = ["browser_usable", "default_prompt", "in_jupyter", "is_interactive", "make_prompt"]


def in_jupyter() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def is_interactive() -> bool:
    """A person can answer: stdin is a terminal, or we run in a Jupyter kernel."""
    try:
        tty = sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        tty = False
    return tty or in_jupyter()


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
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    console = isinstance(browser, webbrowser.GenericBrowser) and not isinstance(browser, webbrowser.BackgroundBrowser)
    return not console


def default_prompt(code: DeviceCode) -> None:
    """Print the link and the code on stderr (or as a link in Jupyter)."""
    minutes = max(1, round((code.expires_at - time.time()) / 60))
    lines = [
        f"To sign in, open {code.verification_uri} and enter the code {code.user_code}",
    ]
    if code.verification_uri_complete:
        lines.append(f"  (or open {code.verification_uri_complete} and check that it shows {code.user_code})")
    lines.append(f"  The code expires in about {minutes} min. Waiting for approval...")
    if in_jupyter() and _display_link(code, lines):
        return
    print("\n".join(lines), file=sys.stderr, flush=True)


def make_prompt(prompt: Callable[[DeviceCode], None] | None, open_browser: bool | None) -> Callable[[DeviceCode], None]:
    show = prompt or default_prompt
    if open_browser is False or (open_browser is None and not browser_usable()):
        return show

    def show_and_open(code: DeviceCode) -> None:
        show(code)
        with contextlib.suppress(webbrowser.Error):
            webbrowser.open(code.url, new=2)

    return show_and_open


def _display_link(code: DeviceCode, lines: list[str]) -> bool:
    try:
        from IPython.display import HTML, display  # type: ignore[import-not-found]
    except ImportError:
        return False
    from html import escape

    link = escape(code.url, quote=True)
    display(
        HTML(
            f'<p>To sign in, open <a href="{link}" target="_blank">{escape(code.verification_uri)}</a> '
            f"and enter the code <b><code>{escape(code.user_code)}</code></b>.</p>"
        )
    )
    return True
