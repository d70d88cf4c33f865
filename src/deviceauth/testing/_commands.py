"""``deviceauth serve`` and ``deviceauth demo``: the embedded server from a shell.

``register(commands)`` adds both to the CLI's subparsers; each sets ``handler``, which
``deviceauth._cli`` calls with the parsed arguments. Imports of the server wait until a
command runs, so ``deviceauth login`` never loads it.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._server import AuthServer

__all__ = ["register"]

_SERVE_EPILOG = """\
clients: client-tools (public) and confidential-client (secret "confidential-secret",
client_secret_basic or client_secret_post). Any user name signs in on the verification page.
Test use only: everything lives in memory and is gone when it stops.
"""


def register(commands: Any) -> None:
    """Add ``serve`` and ``demo`` to the CLI's subparsers (an ``argparse`` subparsers action)."""
    serve = commands.add_parser(
        "serve",
        help="run the embedded test authorization server (Ctrl-C stops it)",
        description="A local RFC 8628 authorization server with a verification page and a protected API.",
        epilog=_SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8628, help="listen port, 0 for any free one (default 8628)")
    serve.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    serve.add_argument("--public-url", help="https URL of a TLS proxy in front of it, used in the issuer")
    serve.add_argument("--mode", choices=["plain", "keycloak"], default="keycloak", help="endpoint layout")
    serve.add_argument("--realm", default="rrap", help="realm name in keycloak mode (default rrap)")
    serve.add_argument("--access-ttl", type=int, default=300, help="access token life in seconds (default 300)")
    serve.add_argument("--refresh-ttl", type=int, default=1800, help="refresh token life in seconds (default 1800)")
    serve.add_argument("--session-max", type=int, help="seconds after login when refreshing stops")
    serve.add_argument("--device-ttl", type=int, default=600, help="device code life in seconds (default 600)")
    serve.add_argument("--interval", type=int, default=5, help="poll interval it announces (default 5)")
    serve.add_argument("--slow-down", type=int, default=0, help="answer the first N polls with slow_down")
    serve.add_argument("--enforce-interval", action="store_true", help="slow_down for polls faster than interval")
    serve.add_argument("--no-rotation", action="store_true", help="keep refresh tokens (no rotation)")
    serve.add_argument("--auto-approve", type=float, metavar="SECONDS", help="approve every code after SECONDS")
    serve.add_argument("--control", action="store_true", help="enable the /__test/ control surface (off)")
    serve.add_argument("--no-discovery-oidc", action="store_true", help="serve only RFC 8414 metadata")
    serve.add_argument("--no-device", action="store_true", help="do not offer the device flow")
    serve.add_argument("-v", "--verbose", action="store_true", help="log each request (never token values)")
    serve.set_defaults(handler=_serve)

    demo = commands.add_parser(
        "demo",
        help="log in against a local server, then call its API with requests, HTTPX and urllib3",
        description="Start the embedded server, log in with the device flow as a user would, then call "
        "its protected API across several token expiries and show what the server saw.",
    )
    demo.add_argument(
        "--auto-approve", action="store_true", help="approve the code without a browser (also when stdin is no TTY)"
    )
    demo.add_argument("-v", "--verbose", action="store_true", help="log what happens (never token values)")
    demo.set_defaults(handler=_demo)


def _serve(args: argparse.Namespace) -> int:
    try:
        server = _make_server(args)
        server.start()
    except (ValueError, OSError) as exc:  # a refused host, a bad knob, a port in use
        print(f"deviceauth: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    try:
        _print_banner(server, args.control)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.stop()
    return 0


def _make_server(args: argparse.Namespace) -> AuthServer:
    from ._server import AuthServer

    return AuthServer(
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
        public_url=args.public_url,
        mode=args.mode,
        realm=args.realm,
        access_ttl=args.access_ttl,
        refresh_ttl=args.refresh_ttl,
        session_max=args.session_max,
        device_ttl=args.device_ttl,
        interval=args.interval,
        slow_down=args.slow_down,
        enforce_interval=args.enforce_interval,
        rotate_refresh_tokens=not args.no_rotation,
        auto_approve=args.auto_approve,
        control=args.control,
        oidc_discovery=not args.no_discovery_oidc,
        device_flow=not args.no_device,
    )


def _print_banner(server: AuthServer, control: bool) -> None:
    public = [c.client_id for c in server.config.clients if c.public]
    confidential = [c.client_id for c in server.config.clients if not c.public]
    print(f"deviceauth test server ({server.mode} mode) on {server.base_url}")
    print(f"  issuer:            {server.issuer}")
    print(f"  verification page: {server.urls.verification}")
    print(f"  public client:     {', '.join(public)}")
    print(f"  confidential:      {', '.join(confidential)} (secret: see deviceauth serve --help)")
    print(f"  protected API:     {server.api_url('me')}")
    print(f"  control surface:   {server.base_url + '/__test/' if control else 'off (--control)'}")
    print(f"try: deviceauth login --issuer {server.issuer} --client-id {public[0]}")
    print("Press Ctrl-C to stop.", flush=True)


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(auto_approve=args.auto_approve or not sys.stdin.isatty())
