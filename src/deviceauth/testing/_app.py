"""Routing for the embedded server: discovery, OAuth endpoints, verification page, API, control.

Transport-free: ``App.handle(Request) -> Response``, so the HTTP layer (``_http``) stays a
thin loop and the rules (which paths exist in which mode, what is counted, where faults
strike) live here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import _pages
from ._authlib import FormRequest, OAuthServer, Reply
from ._models import DEVICE_GRANT, SCOPES
from ._store import ControlError, Fault, Store

__all__ = ["App", "Request", "Response"]

_JSON = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
_HTML_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
]
_FORM = "application/x-www-form-urlencoded"


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: Any  # case-insensitive .get(), as http.server's HTTPMessage
    body: bytes = b""
    remote: str = "127.0.0.1"


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
        merged = {**dict(_JSON), **dict(headers or [])}
        return cls(status, json.dumps(data).encode(), list(merged.items()))

    @classmethod
    def html(cls, status: int, text: str) -> Response:
        return cls(status, text.encode(), list(_HTML_HEADERS))


class _BadForm(ValueError):
    pass


def _single_values(text: str) -> dict[str, str]:
    """Form or query parameters; a repeated one is an error (RFC 6749 section 3.1)."""
    parsed = parse_qs(text, keep_blank_values=True)
    if any(len(values) > 1 for values in parsed.values()):
        raise _BadForm("a parameter was repeated")
    return {key: values[0] for key, values in parsed.items()}


@dataclass(frozen=True)
class Urls:
    base: str
    issuer: str
    device_authorization: str
    token: str
    revocation: str
    jwks: str
    verification: str

    @classmethod
    def build(cls, base: str, issuer_path: str, keycloak: bool) -> Urls:
        issuer = base + issuer_path
        oidc = f"{issuer}/protocol/openid-connect"
        if keycloak:
            return cls(base, issuer, f"{oidc}/auth/device", f"{oidc}/token", f"{oidc}/revoke", f"{oidc}/certs",
                       f"{issuer}/device")  # fmt: skip
        return cls(base, issuer, f"{issuer}/device/auth", f"{issuer}/token", f"{issuer}/token/revocation",
                   f"{issuer}/jwks", f"{issuer}/device")  # fmt: skip


class App:
    """One server's routes; thread-safe (the store holds the lock)."""

    def __init__(self, store: Store, urls: Urls, sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.config = store.config
        self.urls = urls
        self.sleep = sleep
        self.oauth = OAuthServer(store, urls.verification)
        self.form_token = secrets.token_urlsafe(16)  # guards the approval form against cross-site posts
        issuer_path = urlsplit(urls.issuer).path
        self.paths = {urlsplit(url).path: name for name, url in self._endpoint_urls().items()}
        port = urlsplit(urls.base).port
        self._control_hosts = {urlsplit(urls.base).netloc.lower()} | {
            f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")
        }
        self.well_known = {
            f"{issuer_path}/.well-known/openid-configuration": "openid",
            f"/.well-known/oauth-authorization-server{issuer_path}": "oauth",
            f"{issuer_path}/.well-known/oauth-authorization-server": "oauth",
        }

    def _endpoint_urls(self) -> dict[str, str]:
        urls = {"token": self.urls.token, "revocation": self.urls.revocation, "jwks": self.urls.jwks,
                "verification": self.urls.verification}  # fmt: skip
        if self.config.device_flow:
            urls["device_authorization"] = self.urls.device_authorization
        return urls

    # -- dispatch ---------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        path = request.path
        if "/.well-known/" in path:
            self.store.count("discovery")  # any well-known request, found or not, as oidc-provider counts
            return self._faulty("discovery", None, request, self._discovery)
        if path == "/api" or path.startswith("/api/"):
            return self._faulty("api", None, request, self._api)
        if path.startswith("/__test/"):
            return self._control(request)
        name = self.paths.get(path)
        if name == "verification":
            return self._verification(request)
        if name == "jwks":
            return Response.json(200, {"keys": []})  # no ID tokens are signed, so no keys
        if name in ("token", "device_authorization", "revocation"):
            if request.method != "POST":
                return Response.json(405, {"error": "invalid_request", "error_description": "use POST"})
            return self._oauth(name, request)
        return Response.json(404, {"error": "not_found"})

    def _faulty(
        self, endpoint: str, grant: str | None, request: Request, work: Callable[[Request], Response]
    ) -> Response:
        fault = self.store.take_fault(endpoint, grant)
        if fault is None:
            return work(request)
        if fault.kind == "delay":
            self.sleep(fault.seconds)  # outside the store's lock: other requests go on
            return work(request)
        error = Response.json(fault.status, {"error": "server_error", "error_description": "injected fault"})
        if fault.kind == "error_after":
            work(request)  # done (a refresh token rotated), but the client never learns the outcome
        return error

    # -- discovery --------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        urls, methods = self.urls, ["none", "client_secret_basic", "client_secret_post"]
        grants = [DEVICE_GRANT, "refresh_token"] if self.config.device_flow else ["refresh_token"]
        doc: dict[str, Any] = {
            "issuer": urls.issuer,
            "token_endpoint": urls.token,
            "revocation_endpoint": urls.revocation,
            "jwks_uri": urls.jwks,
            "grant_types_supported": grants,
            "response_types_supported": [],
            "scopes_supported": list(SCOPES),
            "token_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_methods_supported": methods,
            "subject_types_supported": ["public"],
        }
        if self.config.device_flow:
            doc["device_authorization_endpoint"] = urls.device_authorization
        return doc

    def _discovery(self, request: Request) -> Response:
        kind = self.well_known.get(request.path)
        if request.method != "GET" or kind is None or (kind == "openid" and not self.config.oidc_discovery):
            return Response.json(404, {"error": "not_found"})
        return Response.json(200, self.metadata(), [("Cache-Control", "public, max-age=60")])

    # -- OAuth endpoints --------------------------------------------------------------------------

    def _oauth(self, name: str, request: Request) -> Response:
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            form = _single_values(request.body.decode("utf-8")) if content_type == _FORM else {}
            args = _single_values(request.query)
        except (_BadForm, UnicodeDecodeError) as exc:
            return Response.json(400, {"error": "invalid_request", "error_description": str(exc)})
        grant = form.get("grant_type") if name == "token" else None
        # Counted as received, whatever answers it (the grant, or an injected fault).
        if name == "token":
            self.store.count("token", grant or "(none)")
        else:
            self.store.count(name)
        return self._faulty(name, grant, request, lambda req: self._run_oauth(name, req, form, args))

    def _run_oauth(self, name: str, request: Request, form: dict[str, str], args: dict[str, str]) -> Response:
        store = self.store
        oauth_request = FormRequest("POST", self._public_url(name), request.headers, form, args)
        # One request at a time through the grants: a device code is redeemed once and a
        # refresh token rotates once, however many clients race for it.
        with store.lock:
            reply: Reply
            if name == "token":
                reply = self.oauth.create_token_response(oauth_request)
                if reply[0] >= 400 and "error" in reply[1]:
                    store.count("token_errors", str(reply[1]["error"]))
            else:
                reply = self.oauth.create_endpoint_response(name, oauth_request)
        status, body, headers = reply
        return Response.json(status, body, headers)

    def _public_url(self, name: str) -> str:
        return {"token": self.urls.token, "revocation": self.urls.revocation}.get(name, self.urls.device_authorization)

    # -- protected resource -----------------------------------------------------------------------

    def _api(self, request: Request) -> Response:
        if request.path in ("/api/redirect-same", "/api/redirect-cross"):
            return self._redirect(request)
        auth = request.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        value = value.strip()
        token = self.store.find_access(value) if scheme.lower() == "bearer" and value else None
        if token is None or not token.usable(self.store.clock()):
            self.store.count("api", "unauthorized")
            challenge = 'Bearer realm="deviceauth"' + (', error="invalid_token"' if value else "")
            body = {"error": "invalid_token", "error_description": "access token is invalid or expired"}
            return Response.json(401, body, [("WWW-Authenticate", challenge)])
        self.store.count("api", "ok")
        return Response.json(200, {
            "sub": token.family.subject,
            "client_id": token.family.client_id,
            "scope": token.get_scope(),
            "method": request.method,
            "path": request.path,
            "query": f"?{request.query}" if request.query else "",
            "body_sha256": hashlib.sha256(request.body).hexdigest(),
            "body_length": len(request.body),
            "token_sha256": hashlib.sha256(value.encode()).hexdigest(),
        })  # fmt: skip

    def _redirect(self, request: Request) -> Response:
        target = _single_values(request.query).get("to", "/api/me")
        if not target.startswith("/") or target.startswith("//"):
            return Response.json(400, {"error": "`to` must be an absolute path"})
        base = self.urls.base
        if request.path == "/api/redirect-cross":
            # Same port, another host name: another origin as far as clients are concerned.
            parts = urlsplit(base)
            other = "localhost" if parts.hostname != "localhost" else "127.0.0.1"
            base = f"{parts.scheme}://{other}:{parts.port}"
        self.store.count("api", "redirect")
        return Response(302, b"", [("Location", base + target), ("Content-Length", "0")])

    # -- verification page ------------------------------------------------------------------------

    def _verification(self, request: Request) -> Response:
        action = self.urls.verification
        try:
            params = _single_values(request.query)
            if request.method == "POST":
                params = _single_values(request.body.decode("utf-8"))
        except (_BadForm, UnicodeDecodeError):
            return Response.html(400, _pages.code_entry(action, "That request was malformed."))
        user_code = params.get("user_code", "").strip()
        if request.method == "POST":
            return self._decide(params, user_code)
        if not user_code:
            return Response.html(200, _pages.code_entry(action))
        try:
            record = self.store.pending(user_code)
        except ControlError as exc:
            return Response.html(200, _pages.code_entry(action, f"That code cannot be used: {exc}.", user_code))
        client = self.store.client(record.client_id)
        return Response.html(200, _pages.review(
            action,
            user_code=record.user_code,
            client_id=record.client_id,
            client_name=client.name if client else "",
            scopes=record.scope.split(),
            form_token=self.form_token,
            user=self.config.auto_approve_user,
        ))  # fmt: skip

    def _decide(self, params: dict[str, str], user_code: str) -> Response:
        if not hmac.compare_digest(params.get("form_token", ""), self.form_token):
            return Response.html(
                403, _pages.outcome("Not allowed", "This form did not come from this server.", ok=False)
            )
        decision, user = params.get("decision"), params.get("username", "").strip()
        try:
            if decision == "approve":
                self.store.approve(user_code, user)
                return Response.html(200, _pages.outcome(
                    "Signed in", f"Signed in as {user}. You can close this window and return to your device.", ok=True
                ))  # fmt: skip
            if decision == "deny":
                self.store.deny(user_code)
                return Response.html(200, _pages.outcome("Denied", "The device was not signed in.", ok=True))
        except ControlError as exc:
            return Response.html(exc.status, _pages.outcome("That did not work", f"{exc}.", ok=False))
        return Response.html(400, _pages.outcome("That did not work", "Choose approve or deny.", ok=False))

    # -- control surface --------------------------------------------------------------------------

    def _control(self, request: Request) -> Response:
        if not self.config.control:
            return Response.json(404, {"error": "not_found"})
        # Loopback callers only, addressed by our own host name, and JSON bodies only: a web page
        # in the person's browser (even via DNS rebinding) cannot approve codes or read counters.
        host = (request.headers.get("Host") or "").lower()
        if request.remote not in ("127.0.0.1", "::1") or host not in self._control_hosts:
            return Response.json(403, {"error": "control surface is for local tests only"})
        if request.method == "POST":
            content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if request.body and content_type != "application/json":
                return Response.json(415, {"error": "send JSON"})
        try:
            body = json.loads(request.body) if request.body else {}
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            return Response.json(200, self._control_action(f"{request.method} {request.path}", body))
        except ControlError as exc:
            return Response.json(exc.status, {"error": str(exc)})
        except (ValueError, TypeError) as exc:
            return Response.json(400, {"error": str(exc)})

    def _control_action(self, route: str, body: dict[str, Any]) -> Any:
        store = self.store
        if route == "GET /__test/stats":
            return store.snapshot()
        if route == "POST /__test/reset":
            store.reset_stats()
            return {"reset": True}
        if route == "POST /__test/approve":
            record = store.approve(str(body.get("user_code", "")), str(body.get("account_id", "alice")))
            return {"approved": True, "account_id": record.subject, "scope": record.scope}
        if route == "POST /__test/deny":
            store.deny(str(body.get("user_code", "")))
            return {"denied": True}
        if route == "POST /__test/revoke-all":
            return {"revoked": store.revoke_all()}
        if route == "GET /__test/tokens":
            return {"tokens": store.issued_tokens()}
        if route == "GET /__test/pending":
            return {"pending": store.pending_codes()}
        if route == "POST /__test/faults":
            store.add_fault(Fault(**body))
            return {"added": True}
        if route == "DELETE /__test/faults":
            store.clear_faults()
            return {"cleared": True}
        raise ControlError(f"no control route {route}", 404)
