"""The verification page a person opens from the device prompt: plain HTML, no scripts.

Three screens: enter the code; review who asks for what and sign in under a name (any
name: this is a test server) to approve or deny; the outcome. Every value is escaped.
"""

from __future__ import annotations

from html import escape

__all__ = ["code_entry", "outcome", "review"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 34rem; margin: 3rem auto; padding: 0 1rem; color: #1d2433; }
h1 { font-size: 1.4rem; } .box { border: 1px solid #c8cfdb; border-radius: 8px; padding: 1.2rem 1.4rem; }
.code { font: 600 1.6rem ui-monospace, monospace; letter-spacing: .12em; }
.muted { color: #5b6475; font-size: .9rem; } .error { color: #a8071a; }
label { display: block; margin: .8rem 0 .3rem; } input[type=text] { font-size: 1.1rem; padding: .4rem; width: 14rem; }
button { font-size: 1rem; padding: .5rem 1.1rem; margin: 1rem .5rem 0 0; border-radius: 6px;
  border: 1px solid #8a93a6; }
button.approve { background: #1f6feb; color: white; border-color: #1f6feb; }
ul { padding-left: 1.2rem; }
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><p class=muted>deviceauth test server</p>{body}</body></html>\n"
    )


def code_entry(action: str, error: str = "", user_code: str = "") -> str:
    problem = f"<p class=error>{escape(error)}</p>" if error else ""
    return _page(
        "Device login",
        f"<h1>Connect a device</h1><div class=box>{problem}"
        f'<form method=get action="{escape(action)}">'
        "<label for=user_code>Enter the code shown on your device</label>"
        f'<input type=text id=user_code name=user_code value="{escape(user_code)}" autocomplete=off autofocus>'
        "<button class=approve type=submit>Continue</button></form></div>",
    )


def review(
    action: str, *, user_code: str, client_id: str, client_name: str, scopes: list[str], form_token: str, user: str
) -> str:
    items = "".join(f"<li><code>{escape(scope)}</code></li>" for scope in scopes) or "<li>no scopes</li>"
    name = (
        f"{escape(client_name)} (<code>{escape(client_id)}</code>)"
        if client_name
        else f"<code>{escape(client_id)}</code>"
    )
    return _page(
        "Approve device login",
        f"<h1>Approve this sign-in?</h1><div class=box>"
        f"<p>Check that your device shows this code:</p><p class=code id=user-code>{escape(user_code)}</p>"
        f"<p>Application: {name}</p><p>It asks for:</p><ul id=scopes>{items}</ul>"
        f'<form method=post action="{escape(action)}">'
        f'<input type=hidden name=user_code value="{escape(user_code)}">'
        f'<input type=hidden name=form_token value="{escape(form_token)}">'
        "<label for=username>Sign in as (any name on this test server)</label>"
        f'<input type=text id=username name=username value="{escape(user)}" autocomplete=username>'
        "<div><button class=approve type=submit name=decision value=approve>Approve</button>"
        "<button type=submit name=decision value=deny>Deny</button></div></form></div>",
    )


def outcome(title: str, message: str, *, ok: bool) -> str:
    css = "" if ok else " class=error"
    return _page(title, f"<h1>{escape(title)}</h1><div class=box><p{css} id=outcome>{escape(message)}</p></div>")
