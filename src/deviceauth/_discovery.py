"""Finding an issuer's endpoints: OpenID Connect discovery, then RFC 8414."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from ._exceptions import DiscoveryError, ServerError

__all__ = ["discover", "well_known_urls"]

log = logging.getLogger("deviceauth.discovery")


def well_known_urls(issuer: str) -> list[str]:
    """Where the metadata may live, in the order servers most often put it.

    OpenID Connect appends to the issuer (Keycloak realms: ``<realm>/.well-known/...``);
    RFC 8414 inserts the well-known segment before the issuer's path, and many servers also
    answer the appended form.
    """
    base = issuer.rstrip("/")
    scheme, netloc, path, _, _ = urlsplit(base)
    urls = [f"{base}/.well-known/openid-configuration"]
    rfc8414 = urlunsplit((scheme, netloc, "/.well-known/oauth-authorization-server" + path, "", ""))
    urls.append(rfc8414)
    appended = f"{base}/.well-known/oauth-authorization-server"
    if appended != rfc8414:
        urls.append(appended)
    return urls


def discover(get: Callable[[str], requests.Response], issuer: str) -> dict[str, Any]:
    """Fetch and check the issuer's metadata; raise ``DiscoveryError`` if none is usable."""
    failures: list[str] = []
    for url in well_known_urls(issuer):
        try:
            response = get(url)
        except requests.RequestException as exc:
            raise ServerError(f"cannot reach the authorization server at {url}: {_reason(exc)}") from exc
        if response.status_code != 200:
            failures.append(f"{url} answered HTTP {response.status_code}")
            continue
        try:
            metadata = response.json()
        except ValueError:
            failures.append(f"{url} did not return JSON")
            continue
        if isinstance(metadata, dict):
            _check(metadata, issuer, url)
            log.debug("discovered metadata for %s at %s", issuer, url)
            return metadata
        failures.append(f"{url} did not return a JSON object")
    raise DiscoveryError(
        f"no authorization server metadata found for issuer {issuer} ({'; '.join(failures)}); "
        "check the issuer URL (for Keycloak: https://HOST/auth/realms/REALM or https://HOST/realms/REALM)"
    )


def _check(metadata: Mapping[str, Any], issuer: str, url: str) -> None:
    advertised = str(metadata.get("issuer", "")).rstrip("/")
    if advertised != issuer.rstrip("/"):
        raise DiscoveryError(
            f"the metadata at {url} names issuer {advertised or '(none)'!s}, not {issuer}; "
            "use the exact issuer URL the server advertises"
        )
    if not metadata.get("token_endpoint"):
        raise DiscoveryError(f"the metadata at {url} has no token_endpoint")


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__
