"""The default prompt in a real Jupyter kernel: a small notebook logs in against the test server.

nbclient runs the notebook in an ipykernel; this test watches the kernel's display messages as
a person would watch the notebook, approves the code it shows, and checks that the display
(link, code, QR as inline SVG) was replaced in place by "Signed in.". The server comes from the
``server`` fixture (conftest), which only needs ``issuer`` and ``approve()``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from oidc_server import OidcServer

CODE = re.compile(r"<code>([A-Z0-9-]+)</code>")


class ApprovingClient(NotebookClient):  # type: ignore[misc]
    """Approves the first user code the notebook displays, and keeps every display message."""

    def __init__(self, nb: Any, server: OidcServer, **kwargs: Any) -> None:
        super().__init__(nb, **kwargs)
        self.server = server
        self.displays: list[dict[str, Any]] = []
        self.approved: list[str] = []

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        if msg["msg_type"] in ("display_data", "update_display_data"):
            self.displays.append(msg)
            match = CODE.search(msg["content"]["data"].get("text/html", ""))
            if match and not self.approved:
                self.approved.append(match.group(1))
                self.server.approve(match.group(1))  # the person, in another tab
        return super().process_message(msg, cell, cell_index)


def notebook(issuer: str, cache: Path) -> Any:
    cells = [
        nbformat.v4.new_code_cell(
            "import os\n"
            "for name in [n for n in os.environ if 'proxy' in n.lower()]:\n"
            "    del os.environ[name]  # loopback traffic only\n"
            "import deviceauth\n"
            f"auth = deviceauth.DeviceAuth({issuer!r}, 'client-tools', scope='openid', cache={str(cache)!r})"
        ),
        nbformat.v4.new_code_cell("token = auth.get_token()\nprint('notebook: got a token', bool(token))"),
    ]
    return nbformat.v4.new_notebook(cells=cells)


def test_jupyter_prompt_shows_link_code_and_qr_then_signed_in(server: OidcServer, tmp_path: Path) -> None:
    nb = notebook(server.issuer, tmp_path / ".tokens.json")
    client = ApprovingClient(nb, server, kernel_name="python3", timeout=60, startup_timeout=60)
    client.execute()

    assert len(client.approved) == 1
    user_code = client.approved[0]
    first = client.displays[0]
    assert first["msg_type"] == "display_data"
    display_id = first["content"]["transient"]["display_id"]
    page = first["content"]["data"]["text/html"]
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs and all(href.startswith(server.issuer) for href in hrefs)
    assert any(user_code in href for href in hrefs)  # the link with the code filled in
    assert f"<code>{user_code}</code>" in page
    assert "<svg" in page  # the QR code, inline

    last = client.displays[-1]
    assert last["msg_type"] == "update_display_data"
    assert last["content"]["transient"]["display_id"] == display_id

    # The saved notebook: the prompt's output now reads "Signed in.", with no leftovers.
    outputs = nb.cells[1].outputs
    html_outputs = [out for out in outputs if out.get("output_type") == "display_data"]
    assert len(html_outputs) == 1
    final = html_outputs[0]["data"]["text/html"]
    assert "Signed in." in final
    assert user_code not in final
    assert "<svg" not in final
    streams = "".join(out.get("text", "") for out in outputs if out.get("output_type") == "stream")
    assert "notebook: got a token True" in streams
    assert "Traceback" not in streams
