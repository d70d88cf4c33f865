"""Redis store URLs: what ``redis://``, ``rediss://`` and ``unix://`` may say, and the name a store goes by.

Our own parser (not redis-py's), so we decide what is accepted: the path is the database number,
optionally followed by the key prefix (the form ``location`` uses, so a location reopens its
store); a query may set only the options below; nothing from a URL that may hold a password is
ever echoed in an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis

__all__ = ["credentials", "describe_client", "location", "parse_url"]

URL_OPTIONS = frozenset(
    {"db", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "prefix", "socket_timeout", "lock_ttl", "allow_plaintext"}
)


def parse_url(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Connection arguments and store options from a store URL (our parser: we decide what is accepted)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("the Redis URL is malformed") from None  # the URL may hold a password: not echoed
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("a Redis store URL starts with redis://, rediss:// or unix://")
    query = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(query) - URL_OPTIONS
    if unknown:
        raise ValueError(f"unknown Redis URL option(s): {', '.join(sorted(unknown))}")
    connect: dict[str, Any] = {}
    if parts.username:
        connect["username"] = unquote(parts.username)
    if parts.password:
        connect["password"] = unquote(parts.password)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// Redis URL needs a socket path: unix:///path/to/redis.sock")
        connect["path"] = unquote(parts.path)
    else:
        connect["host"] = parts.hostname or "localhost"
        connect["port"] = port or 6379
        connect["tls"] = parts.scheme == "rediss"
        # The path is the database number, optionally followed by the key prefix: the form
        # ``location`` uses, so a store's location reopens it (with the password supplied apart).
        db_path, _, path_prefix = parts.path.lstrip("/").partition("/")
        if db_path:
            if not db_path.isdigit():
                raise ValueError("the path of a Redis URL is the database number, e.g. redis://host:6379/0")
            connect["db"] = int(db_path)
        if path_prefix:
            query.setdefault("prefix", unquote(path_prefix))
    options: dict[str, Any] = {}
    for name, value in query.items():
        if name == "db":
            if not value.isdigit():
                raise ValueError("db must be a database number")
            connect["db"] = int(value)
        else:
            options[name] = value
    return connect, options


def describe_client(client: redis.Redis) -> dict[str, Any]:
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return {"path": kwargs["path"], "db": kwargs.get("db", 0)}
    return {"host": kwargs.get("host", "localhost"), "port": kwargs.get("port", 6379), "db": kwargs.get("db", 0)}


def credentials(connect: Mapping[str, Any]) -> dict[str, Any]:
    return {k: connect[k] for k in ("username", "password") if connect.get(k)}


def location(connect: Mapping[str, Any], prefix: str) -> str:
    """The store's name: a URL that reopens it, with the username but never the password."""
    db = connect.get("db", 0)
    user = f"{quote(connect['username'], safe='')}@" if connect.get("username") else ""
    if connect.get("path"):
        return f"unix://{user}{quote(connect['path'])}?db={db}&prefix={quote(prefix, safe=':')}"
    scheme = "rediss" if connect.get("tls") else "redis"
    host = connect.get("host", "localhost")
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{user}{host}:{connect.get('port', 6379)}/{db}/{quote(prefix, safe=':')}"
