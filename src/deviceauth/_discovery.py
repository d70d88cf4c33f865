"""Finding an issuer's endpoints: OpenID Connect discovery, then RFC 8414."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from ._bounded import failure_reason
from ._exceptions import DeviceAuthError, DiscoveryError, ServerError
from ._redact import redact
from ._transport import check_outbound, safe_origin

__all__ = ["ENDPOINTS", "discover", "well_known_urls"]

# The endpoints we send to: each must pass the outbound policy before the metadata is used or cached.
ENDPOINTS = ("token_endpoint", "device_authorization_endpoint", "revocation_endpoint")

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
    """Fetch and check the issuer's metadata; raise ``DiscoveryError`` if none is usable.

    Network errors and 5xx answers are transient (``ServerError``/``DiscoveryError`` with
    ``transient=True``); 4xx, non-JSON and unusable metadata are not.
    """
    check_outbound(issuer)
    failures: list[str] = []
    transient = False
    for url in well_known_urls(issuer):
        try:
            response = get(url)
        except DeviceAuthError:
            raise
        except requests.RequestException as exc:
            retry = not isinstance(exc, requests.exceptions.SSLError)
            raise ServerError(
                f"cannot reach the authorization server at {url}: {failure_reason(exc)}", transient=retry
            ) from exc
        except Exception as exc:  # anything else from the HTTP stack: typed, never raw
            raise ServerError(f"discovery at {url} failed ({type(exc).__name__})", transient=False) from exc
        if response.status_code != 200:
            transient = transient or response.status_code >= 500
            failures.append(f"{url} answered HTTP {response.status_code}")
            continue
        try:
            metadata = json.loads(response.content)
        except (ValueError, RecursionError):
            failures.append(f"{url} did not return JSON")
            continue
        if isinstance(metadata, dict):
            _check(metadata, issuer, url)
            log.debug("discovered metadata for %s at %s", issuer, url)
            return metadata
        failures.append(f"{url} did not return a JSON object")
    raise DiscoveryError(
        f"no authorization server metadata found for issuer {issuer} ({'; '.join(failures)}); "
        "check the issuer URL (for Keycloak: https://HOST/auth/realms/REALM or https://HOST/realms/REALM)",
        transient=transient,
    )


def _check(metadata: Mapping[str, Any], issuer: str, url: str) -> None:
    raw = metadata.get("issuer")
    advertised = raw.rstrip("/") if isinstance(raw, str) else ""
    if advertised != issuer.rstrip("/"):
        shown = redact(raw) if raw is not None else "(none)"
        raise DiscoveryError(
            f"the metadata at {url} names issuer {shown}, not {issuer}; use the exact issuer URL the server advertises"
        )
    if not metadata.get("token_endpoint"):
        raise DiscoveryError(f"the metadata at {url} has no token_endpoint")
    for name in ENDPOINTS:
        endpoint = metadata.get(name)
        if endpoint is None:
            continue
        if not isinstance(endpoint, str):
            raise DiscoveryError(f"the metadata at {url} has a {name} that is not a string")
        try:
            check_outbound(endpoint)
        except DeviceAuthError as exc:
            raise DiscoveryError(
                f"the metadata at {url} has an unusable {name} ({safe_origin(endpoint)}): {exc}"
            ) from None
