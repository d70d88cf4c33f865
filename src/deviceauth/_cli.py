"""``deviceauth login | status | token | logout``: the token store, from a shell.

Every failure is one line on stderr and a non-zero exit code, whatever the input: no
traceback reaches the terminal. Tokens appear only in the output of ``token``, whose job is to
print one. ``token`` and ``status`` import only what they need, so ``$(deviceauth token)`` in a
shell loop costs little more than Python's own start-up while the stored token is fresh.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._exceptions import DeviceAuthError

if TYPE_CHECKING:
    from ._auth import DeviceAuth
    from ._store import Record

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, not argparse's usage dump
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--issuer",
        default=os.environ.get("DEVICEAUTH_ISSUER"),
        help="issuer URL, e.g. https://host/auth/realms/REALM [$DEVICEAUTH_ISSUER]",
    )
    common.add_argument(
        "--client-id", default=os.environ.get("DEVICEAUTH_CLIENT_ID"), help="OAuth client id [$DEVICEAUTH_CLIENT_ID]"
    )
    common.add_argument(
        "--scope", default=os.environ.get("DEVICEAUTH_SCOPE"), help="space-separated scopes [$DEVICEAUTH_SCOPE]"
    )
    common.add_argument(
        "--cache",
        default=None,
        help="token store: a file or redis://... URL [$DEVICEAUTH_CACHE, else ~/.cache/deviceauth/.tokens.json]",
    )
    verbose = _Parser(add_help=False)
    # Accepted before and after the command; SUPPRESS keeps a later default from undoing an earlier -v.
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log what happens (never token values)"
    )

    parser = _Parser(
        prog="deviceauth", description="OAuth 2.0 device login and a shared token store.", parents=[verbose]
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    login = commands.add_parser("login", parents=[common, verbose], help="log in with the device flow")
    login.add_argument("--no-browser", action="store_true", help="never open a browser")
    commands.add_parser("status", parents=[common, verbose], help="show stored identities and expiry times")
    commands.add_parser("token", parents=[common, verbose], help="print a valid access token (refreshing if needed)")
    logout = commands.add_parser("logout", parents=[common, verbose], help="forget (and revoke) the stored tokens")
    logout.add_argument("--no-revoke", action="store_true", help="only remove the tokens from the store")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if getattr(args, "verbose", False):
            logging.basicConfig(level=logging.DEBUG, format="deviceauth: %(name)s: %(message)s")
        return int(_run(args))
    except _UsageError as exc:
        return _fail(f"error: {exc}", EXIT_USAGE)
    except (DeviceAuthError, ValueError, TypeError) as exc:
        # ValueError/TypeError: arguments DeviceAuth refused; their messages name the argument.
        return _fail(f"error: {exc}", EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # the promise: never a traceback, and never an unvetted message
        return _fail(f"internal error ({type(exc).__name__}); run with -v and report it", EXIT_ERROR)


def _fail(message: str, code: int) -> int:
    print(f"deviceauth: {' '.join(message.split())}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> int:
    if args.command == "status":
        return _status(args)
    if args.command == "token" and (fresh := _fresh_stored_token(args)) is not None:
        print(fresh)
        return 0
    auth = _auth(args)
    if args.command == "login":
        auth.login()
        token = auth.cached_token()
        expiry = f"; access token valid until {_when(token.expires_at)}" if token else ""
        print(f"Logged in to {auth.issuer} as client {auth.client_id}{expiry}", file=sys.stderr)
    elif args.command == "token":
        print(auth.get_token())
    elif args.command == "logout":
        return _logout(auth, revoke=not args.no_revoke)
    return 0


def _logout(auth: DeviceAuth, *, revoke: bool) -> int:
    result = auth.logout(revoke=revoke)
    if not result:
        print("Nothing to log out: no stored tokens for this identity", file=sys.stderr)
    elif result.revoked or not revoke:
        print("Logged out" + (" and revoked the tokens at the server" if revoke else ""), file=sys.stderr)
    else:
        print(
            "Logged out here, but the server did not confirm the revocation: "
            "the tokens may stay valid until they expire (run with -v for why)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return 0


def _fresh_stored_token(args: argparse.Namespace) -> str | None:
    """The stored access token when it is fresh: no HTTP library, no OAuth client, no lock."""
    if not args.issuer or not args.client_id:
        return None
    from ._location import open_store
    from ._settings import Settings, normalize_scope

    settings = Settings(issuer=args.issuer, client_id=args.client_id, scope=normalize_scope(args.scope))
    token = open_store(args.cache).read(settings.identity)
    if token is None or time.time() >= token.refresh_due_at(None):
        return None
    return token.access_token


def _auth(args: argparse.Namespace) -> DeviceAuth:
    missing = [flag for flag, value in (("--issuer", args.issuer), ("--client-id", args.client_id)) if not value]
    if missing:
        raise _UsageError(f"{' and '.join(missing)} required (or set DEVICEAUTH_ISSUER / DEVICEAUTH_CLIENT_ID)")
    from ._auth import DeviceAuth

    open_browser = False if getattr(args, "no_browser", False) else None
    return DeviceAuth(args.issuer, args.client_id, scope=args.scope, cache=args.cache, open_browser=open_browser)


def _status(args: argparse.Namespace) -> int:
    from ._location import open_store

    store = open_store(args.cache)
    issuer = args.issuer.rstrip("/") if args.issuer else None
    rows = [
        _describe(record)
        for record in store.records()
        if (issuer is None or record.identity.issuer == issuer)
        and (not args.client_id or record.identity.client_id == args.client_id)
    ]
    if not rows:
        print(f"No cached identities in {store.location}", file=sys.stderr)
        return EXIT_ERROR if args.issuer or args.client_id else 0
    print(f"Cache: {store.location}")
    for row in rows:
        print(row)
    return 0


def _describe(record: Record) -> str:
    token, identity = record.token, record.identity
    now = time.time()
    access = "valid" if now < token.expires_at else "expired"
    if token.refresh_token is None:
        session = "no refresh token"
    elif token.can_refresh(now):
        session = "refreshable" + (f" until {_when(token.refresh_expires_at)}" if token.refresh_expires_at else "")
    else:
        session = "session ended; log in again"
    scope = f" scope={_printable(identity.scope)}" if identity.scope else ""
    return (
        f"{_printable(identity.issuer)}  client={_printable(identity.client_id)}{scope}\n"
        f"  access token {access} until {_when(token.expires_at)}; {session}"
    )


def _printable(text: str) -> str:
    """A stored string as it may reach a terminal: no control characters, bounded."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= 200 else cleaned[:199] + "…"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(timestamp))
    except (OverflowError, OSError, ValueError):
        return "(far future)" if timestamp > 0 else "(unknown)"
