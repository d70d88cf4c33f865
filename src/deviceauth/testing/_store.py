"""The embedded server's memory: device codes, token families, counters and injected faults.

One re-entrant lock guards all of it. HTTP handler threads hold it for the few microseconds
a request's bookkeeping takes, never while sleeping (injected delays happen outside it).
"""

from __future__ import annotations

import copy
import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ._config import ServerConfig
from ._models import AccessToken, Client, DeviceRecord, Family, RefreshToken, new_secret

__all__ = ["ControlError", "Fault", "Store", "empty_stats", "normalize_user_code"]

FaultKind = Literal["error_before", "error_after", "delay"]
FAULT_KINDS: tuple[str, ...] = ("error_before", "error_after", "delay")
FAULT_ENDPOINTS = ("token", "device_authorization", "revocation", "api", "discovery")


class ControlError(Exception):
    """A control call that cannot be done (unknown code, already approved, ...), with an HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def normalize_user_code(text: str) -> str:
    """Upper-case and without separators, so "bcdf-ghjk", "BCDFGHJK" and " BCDF GHJK " match."""
    return re.sub(r"\W", "", str(text)).upper()


def empty_stats() -> dict[str, Any]:
    # Same shape as the oidc-provider test server's counters, plus the embedded server's own.
    return {
        "device_authorization": 0,  # POSTs to the device authorization endpoint (any outcome)
        "token": {},  # grant_type -> token endpoint requests (any outcome)
        "token_errors": {},  # error code -> token endpoint error responses
        "revocation": 0,
        "discovery": 0,
        "api": {"ok": 0, "unauthorized": 0, "redirect": 0},
        "reuse_detected": 0,  # used refresh tokens presented again (each revokes its login)
        "faults": {},  # fault kind -> times injected
    }


@dataclass
class Fault:
    """A one-shot (or N-shot) misbehaviour of one endpoint, for testing a client's recovery."""

    kind: FaultKind
    endpoint: str = "token"
    grant_type: str | None = None  # token endpoint only: which grant it hits (None: any)
    count: int = 1
    status: int = 503
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, not {self.kind!r}")
        if self.endpoint not in FAULT_ENDPOINTS:
            raise ValueError(f"fault endpoint must be one of {FAULT_ENDPOINTS}, not {self.endpoint!r}")
        if not 500 <= self.status <= 599:
            raise ValueError("fault status must be a 5xx code")
        if self.count < 1 or not 0 <= self.seconds <= 60:
            raise ValueError("fault count must be >= 1 and seconds within 0..60")

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "endpoint": self.endpoint, "grant_type": self.grant_type,
                "count": self.count, "status": self.status, "seconds": self.seconds}  # fmt: skip

    def matches(self, endpoint: str, grant_type: str | None) -> bool:
        return self.endpoint == endpoint and (self.grant_type is None or self.grant_type == grant_type)


class Store:
    """Everything the server knows; every method takes the lock itself (it is re-entrant)."""

    def __init__(self, config: ServerConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.clients = {client.client_id: client for client in config.clients}
        self.devices: dict[str, DeviceRecord] = {}
        self.user_codes: dict[str, DeviceRecord] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.families: list[Family] = []
        self.faults: list[Fault] = []
        self.stats = empty_stats()

    # -- counters ---------------------------------------------------------------------------------

    def count(self, *path: str) -> None:
        with self.lock:
            node = self.stats
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = node.get(path[-1], 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.stats)

    def reset_stats(self) -> None:
        with self.lock:
            self.stats = empty_stats()

    # -- faults -----------------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, endpoint: str, grant_type: str | None) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(endpoint, grant_type):
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    self.count("faults", fault.kind)
                    return fault
        return None

    # -- device codes -----------------------------------------------------------------------------

    def add_device(self, record: DeviceRecord) -> None:
        with self.lock:
            self.devices[record.device_code] = record
            self.user_codes[normalize_user_code(record.user_code)] = record

    def find_user_code(self, user_code: str) -> DeviceRecord | None:
        with self.lock:
            return self.user_codes.get(normalize_user_code(user_code))

    def pending(self, user_code: str) -> DeviceRecord:
        """The pending device code with this user code, or ControlError (404 unknown, 409 not pending)."""
        with self.lock:
            record = self.find_user_code(user_code) if user_code else None
            if record is None:
                raise ControlError("unknown user_code", 404)
            if record.is_expired(self.clock()):
                raise ControlError("device code expired", 409)
            if record.status != "pending":
                raise ControlError("device code already approved, denied or used", 409)
            return record

    def pending_codes(self) -> list[dict[str, Any]]:
        """The codes waiting for a person, oldest first (what a test-side approver looks for)."""
        with self.lock:
            now = self.clock()
            return [
                {"user_code": r.user_code, "client_id": r.client_id, "scope": r.scope, "expires_at": r.expires_at}
                for r in self.devices.values()
                if r.status == "pending" and not r.is_expired(now)
            ]

    def approve(self, user_code: str, subject: str = "alice") -> DeviceRecord:
        if not subject or len(subject) > 200:
            raise ControlError("a user name of 1 to 200 characters is required", 400)
        with self.lock:
            record = self.pending(user_code)
            record.status, record.subject = "approved", subject
            return record

    def deny(self, user_code: str) -> DeviceRecord:
        with self.lock:
            record = self.pending(user_code)
            record.status = "denied"
            return record

    def auto_approve_due(self, record: DeviceRecord) -> None:
        delay = self.config.auto_approve
        if delay is not None and record.status == "pending" and self.clock() >= record.created_at + delay:
            record.status, record.subject = "approved", self.config.auto_approve_user

    # -- tokens -----------------------------------------------------------------------------------

    def new_family(self, client_id: str, subject: str, scope: str) -> Family:
        now = self.clock()
        session_max = self.config.session_max
        family = Family(
            family_id=new_secret()[:12],
            client_id=client_id,
            subject=subject,
            scope=scope,
            started_at=now,
            session_ends_at=None if session_max is None else int(now) + session_max,
        )
        with self.lock:
            self.families.append(family)
        return family

    def issue_access(self, family: Family, value: str, ttl: int) -> AccessToken:
        # Whole seconds, as real servers write `exp` into JWTs: a token may die up to a
        # second before a client that counts from its own clock expects.
        issued = int(self.clock())
        token = AccessToken(value, family, issued, issued + ttl)
        with self.lock:
            family.access.append(token)
            self.access[value] = token
        return token

    def issue_refresh(self, family: Family, value: str) -> RefreshToken:
        issued = int(self.clock())
        expires = issued + self.config.refresh_ttl
        if family.session_ends_at is not None:
            expires = min(expires, int(family.session_ends_at))
        token = RefreshToken(value, family, issued, expires)
        with self.lock:
            family.refresh.append(token)
            self.refresh[value] = token
        return token

    def find_access(self, value: str) -> AccessToken | None:
        with self.lock:
            return self.access.get(value)

    def find_refresh(self, value: str) -> RefreshToken | None:
        with self.lock:
            return self.refresh.get(value)

    def revoke_all(self) -> int:
        """End every login (as an administrator logging everyone out); returns how many."""
        with self.lock:
            live = [family for family in self.families if not family.revoked]
            for family in live:
                family.revoke()
            return len(live)

    def issued_tokens(self) -> list[dict[str, Any]]:
        """What was issued, for tests: fingerprints and state, never the token values."""

        def describe(token: AccessToken | RefreshToken) -> dict[str, Any]:
            entry: dict[str, Any] = {
                "kind": token.kind,
                "sha256": hashlib.sha256(token.value.encode()).hexdigest(),
                "family": token.family.family_id,
                "client_id": token.family.client_id,
                "sub": token.family.subject,
                "scope": token.family.scope,
                "issued_at": token.issued_at,
                "expires_at": token.expires_at,
                "revoked": token.is_revoked(),
            }
            if isinstance(token, RefreshToken):
                entry["consumed"] = token.consumed
            return entry

        with self.lock:
            tokens: list[AccessToken | RefreshToken] = []
            for family in self.families:
                tokens.extend(family.access)
                tokens.extend(family.refresh)
            return [describe(t) for t in tokens]

    def client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)
