"""``deviceauth login | status | token | logout``: the cache, from a shell.

Every failure is one line on stderr and a non-zero exit code; tokens appear only in the
output of ``token``, whose job is to print one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from ._auth import DeviceAuth
from ._cache import TokenCache
from ._exceptions import DeviceAuthError
from ._token import Token
from .testing._commands import register as register_testing_commands

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
        "--cache", default=None, help="token cache file [$DEVICEAUTH_CACHE, else ~/.cache/deviceauth/.tokens.json]"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log what happens (never token values)")

    parser = _Parser(prog="deviceauth", description="OAuth 2.0 device login and a shared token cache.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    login = commands.add_parser("login", parents=[common], help="log in with the device flow")
    login.add_argument("--no-browser", action="store_true", help="never open a browser")
    commands.add_parser("status", parents=[common], help="show cached identities and expiry times")
    commands.add_parser("token", parents=[common], help="print a valid access token (refreshing if needed)")
    logout = commands.add_parser("logout", parents=[common], help="forget (and revoke) the cached tokens")
    logout.add_argument("--no-revoke", action="store_true", help="only remove the tokens from the cache")
    register_testing_commands(commands)  # serve, demo (deviceauth.testing)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.verbose:
            logging.basicConfig(level=logging.DEBUG, format="deviceauth: %(name)s: %(message)s")
        return int(_run(args))
    except _UsageError as exc:
        print(f"deviceauth: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DeviceAuthError as exc:
        print(f"deviceauth: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("deviceauth: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    if hasattr(args, "handler"):  # commands registered by deviceauth.testing
        return int(args.handler(args))
    if args.command == "status":
        return _status(args)
    auth = _auth(args)
    if args.command == "login":
        auth.login()
        token = auth.cached_token()
        expiry = f"; access token valid until {_when(token.expires_at)}" if token else ""
        print(f"Logged in to {auth.issuer} as client {auth.client_id}{expiry}", file=sys.stderr)
    elif args.command == "token":
        print(auth.get_token())
    elif args.command == "logout":
        removed = auth.logout(revoke=not args.no_revoke)
        print("Logged out" if removed else "Nothing to log out: no cached tokens for this identity", file=sys.stderr)
    return 0


def _auth(args: argparse.Namespace) -> DeviceAuth:
    missing = [flag for flag, value in (("--issuer", args.issuer), ("--client-id", args.client_id)) if not value]
    if missing:
        raise _UsageError(f"{' and '.join(missing)} required (or set DEVICEAUTH_ISSUER / DEVICEAUTH_CLIENT_ID)")
    open_browser = False if getattr(args, "no_browser", False) else None
    return DeviceAuth(args.issuer, args.client_id, scope=args.scope, cache=args.cache, open_browser=open_browser)


def _status(args: argparse.Namespace) -> int:
    cache = TokenCache(args.cache)
    identities = cache.read()["identities"]
    rows = []
    for entry in identities.values():
        if args.issuer and entry.get("issuer") != args.issuer.rstrip("/"):
            continue
        if args.client_id and entry.get("client_id") != args.client_id:
            continue
        rows.append(_describe(entry))
    if not rows:
        print(f"No cached identities in {cache.path}", file=sys.stderr)
        return EXIT_ERROR if args.issuer or args.client_id else 0
    print(f"Cache: {cache.path}")
    for row in rows:
        print(row)
    return 0


def _describe(entry: dict[str, Any]) -> str:
    token = Token.from_json(entry["token"])
    now = time.time()
    access = "valid" if now < token.expires_at else "expired"
    if token.refresh_token is None:
        session = "no refresh token"
    elif token.can_refresh(now):
        session = "refreshable" + (f" until {_when(token.refresh_expires_at)}" if token.refresh_expires_at else "")
    else:
        session = "session ended; log in again"
    scope = f" scope={entry['scope']}" if entry.get("scope") else ""
    return (
        f"{entry.get('issuer')}  client={entry.get('client_id')}{scope}\n"
        f"  access token {access} until {_when(token.expires_at)}; {session}"
    )


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(timestamp))
