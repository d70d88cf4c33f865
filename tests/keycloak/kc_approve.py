"""Approve a Keycloak device login the way a person would: through its real pages.

``FormApprover`` walks the pages with a requests session (device verification → login form →
consent form → "device login successful"); it needs no browser and takes a fraction of a
second, so most tests use it. It is a picklable dataclass, so worker processes can use it as
their ``prompt``. ``browser_approve`` does the same in headless Debian Chromium (playwright).
Standard library and requests only; no deviceauth internals.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import requests

from deviceauth import DeviceCode

USERNAME = "alice"
PASSWORD = "alice-password"  # the realm files' test user; nothing real


@dataclass
class _Form:
    action: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, str] = field(default_factory=dict)


class _Forms(HTMLParser):
    """Collects every form on a page: its action, its inputs and its named submit buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(_Form(action=a.get("action", "")))
        elif self.forms and tag in ("input", "button") and a.get("name"):
            if a.get("type") == "submit" or tag == "button":
                self.forms[-1].buttons[a["name"]] = a.get("value", "")
            else:
                self.forms[-1].fields[a["name"]] = a.get("value", "")


class ApprovalFailed(AssertionError):
    pass


def walk(user_code: str, verification_uri: str, *, accept: bool = True, timeout: float = 10) -> str:
    """Approve (or deny) ``user_code``; returns the text of the last page Keycloak showed."""
    with requests.Session() as session:
        session.trust_env = False  # loopback only: never through a proxy from the environment
        # Keycloak answers the verification POST with JSON errors unless the client asks for HTML.
        session.headers["Accept"] = "text/html"
        response = _send(session, "GET", verification_uri, timeout)
        for _ in range(6):  # code page, login page, consent page; bounded
            response.raise_for_status()
            parser = _Forms()
            parser.feed(response.text)
            if not parser.forms:
                return response.text
            form = parser.forms[0]
            data = dict(form.fields)
            if "device_user_code" in data:
                data["device_user_code"] = user_code
            if "username" in data or "password" in data:
                data.update(username=USERNAME, password=PASSWORD)
            if "accept" in form.buttons or "cancel" in form.buttons:  # the consent page
                choice = "accept" if accept else "cancel"
                data[choice] = form.buttons.get(choice, "")
            response = _send(session, "POST", urljoin(response.url, form.action), timeout, data)
        raise ApprovalFailed(f"Keycloak kept showing forms for {user_code}: {response.url}")


def _send(
    session: requests.Session, method: str, url: str, timeout: float, data: dict[str, str] | None = None
) -> requests.Response:
    """Follow redirects by hand: Keycloak marks its cookies Secure, which requests withholds over http.

    A browser treats http://127.0.0.1 as a secure context and sends them; requests' redirect
    handling copies the jar and would drop them, so each hop clears the flag first.
    """
    for _ in range(10):
        response = session.request(method, url, data=data, timeout=timeout, allow_redirects=False)
        for cookie in session.cookies:
            cookie.secure = False
        if not response.is_redirect:
            return response
        method, url, data = "GET", urljoin(response.url, response.headers["Location"]), None
    raise ApprovalFailed(f"too many redirects from {url}")


def check_approved(page: str) -> None:
    if "successful" not in page.lower():
        raise ApprovalFailed(f"Keycloak did not confirm the device login: {page[:300]!r}")


@dataclass
class FormApprover:
    """A ``prompt=``: approves every code it is shown, and remembers how many it saw.

    With ``marks`` set it also leaves one file per prompt there, so prompts shown in other
    processes can be counted.
    """

    marks: str | None = None
    accept: bool = True
    codes: list[str] = field(default_factory=list)

    def __call__(self, code: DeviceCode) -> None:
        self.codes.append(code.user_code)
        if self.marks is not None:
            Path(self.marks, f"prompt-{os.getpid()}-{time.monotonic_ns()}").touch()
        page = walk(code.user_code, code.verification_uri, accept=self.accept)
        if self.accept:
            check_approved(page)


_PROMPT = re.compile(r"open (\S+) and enter the code (\S+)")


def run_approving(
    command: list[str], *, env: dict[str, str], cwd: str | None = None, stdin: int | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run ``command``; when it prints a device-login prompt on stderr, approve it like a person would.

    Returns the finished process with its stdout and stderr (``.prompts`` is not kept: count
    the ``To sign in`` lines in stderr).
    """
    out = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
        stdout=out,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    failures: list[BaseException] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            match = _PROMPT.search(line)
            if match:
                try:
                    check_approved(walk(match.group(2), match.group(1)))
                except BaseException as exc:  # reported by the caller's assertion below
                    failures.append(exc)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    reader.join(timeout=10)
    if proc.stderr is not None:
        proc.stderr.close()
    out.seek(0)
    stdout = out.read()
    out.close()
    if failures:
        raise failures[0]
    return subprocess.CompletedProcess(command, proc.returncode, stdout, "".join(lines))
