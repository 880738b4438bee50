"""What every simulated upstream shares: requests, responses, the write ledger and fault rules.

Pure standard library on purpose: the sandbox is its own process with its own state, and tests
start it in a thread without touching Django's database.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo


class BadRequestBody(ValueError):
    """The body is not the JSON a service expects."""


@dataclass
class Request:
    method: str
    # The path below the service's prefix, e.g. "/v1/subscription/list" for Paynet.
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]  # case-insensitive lookups (email.message.Message)
    body: bytes
    client_ip: str = "127.0.0.1"

    def json(self) -> Any:
        if not self.body.strip():
            raise BadRequestBody("empty body")
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequestBody(str(exc)) from exc

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, **headers: str) -> Response:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        return cls(status=status, body=data, headers=dict(headers))

    @classmethod
    def raw(cls, status: int, body: bytes, content_type: str = "text/plain") -> Response:
        return cls(status=status, body=body, content_type=content_type)


class Ledger:
    """Every write a service accepted, in order, so tests can prove nothing was lost or doubled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []

    def record(self, service: str, operation: str, request: Any, **details: Any) -> dict:
        with self._lock:
            entry = {
                "seq": len(self._entries) + 1,
                "at": time.time(),
                "service": service,
                "operation": operation,
                "request": request,
                **details,
            }
            self._entries.append(entry)
            return entry

    def entries(self, service: str | None = None, operation: str | None = None) -> list[dict]:
        with self._lock:
            return [
                e
                for e in self._entries
                if (service is None or e["service"] == service)
                and (operation is None or e["operation"] == operation)
            ]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class RequestLog(Ledger):
    """When each upstream request arrived (reads, refusals and faults too): rate caps are
    checked against it. Kept to the latest `limit` requests."""

    def __init__(self, limit: int = 100_000) -> None:
        super().__init__()
        self.limit = limit

    def record(self, service: str, operation: str) -> None:  # type: ignore[override]
        with self._lock:
            self._entries.append({"at": time.time(), "service": service, "operation": operation})
            if len(self._entries) > self.limit:
                del self._entries[: len(self._entries) - self.limit]


class InFlight:
    """Requests being served per upstream, now and at most since the last reset: tests prove a
    concurrency cap with it. A request counts from its arrival until just before its answer is
    written, so a client never sees the next request counted beside the one it just got back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now: dict[str, int] = {}
        self._max: dict[str, int] = {}

    def enter(self, service: str) -> None:
        with self._lock:
            self._now[service] = now = self._now.get(service, 0) + 1
            self._max[service] = max(self._max.get(service, 0), now)

    def leave(self, service: str) -> None:
        with self._lock:
            self._now[service] -= 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                service: {"current": self._now.get(service, 0), "max": self._max.get(service, 0)}
                for service in sorted(set(self._now) | set(self._max))
            }

    def clear(self) -> None:
        """Forget the maxima (requests being served still count)."""
        with self._lock:
            self._max = {s: n for s, n in self._now.items() if n}


FAULT_KINDS = {"timeout", "drop", "status", "malformed", "reject", "rate_limit", "latency"}


@dataclass
class FaultRule:
    """One injected fault.

    kind:
      timeout     wait `seconds` (default 30), then close the connection without an answer
      drop        close the connection without an answer
      status      answer HTTP `status` (default 500) with the service's server-error body
      malformed   answer HTTP 200 with a body that is not JSON
      reject      answer the service's business refusal (`message` optional)
      rate_limit  answer HTTP 429 with Retry-After `seconds` (default 1)
      latency     add `seconds` of delay, then answer normally
    apply: process the request first (the write is applied and recorded in the ledger), then
      produce the fault: {"kind": "drop", "apply": true} is "applied but no answer".
    service / operation: which requests it hits (None = any).
    match: payload fields that must be equal, e.g. {"invoice_no": "11400505"}.
    times: how many requests it hits before it is used up (None = every matching request).
    rate: the chance it hits a matching request (drawn from the sandbox's seeded RNG).
    """

    kind: str
    service: str | None = None
    operation: str | None = None
    match: dict[str, Any] = field(default_factory=dict)
    times: int | None = None
    rate: float = 1.0
    apply: bool = False
    status: int = 500
    seconds: float | None = None
    message: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        rule = cls(**data)
        if rule.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {rule.kind!r}; one of {sorted(FAULT_KINDS)}")
        return rule

    def matches(self, service: str, operation: str, payload: Any) -> bool:
        if self.service not in (None, service) or self.operation not in (None, operation):
            return False
        if self.times is not None and self.times <= 0:
            return False
        if self.match:
            items = payload if isinstance(payload, list) else [payload]
            if not any(
                isinstance(p, Mapping)
                and all(str(p.get(k)) == str(v) for k, v in self.match.items())
                for p in items
            ):
                return False
        return True


class FaultPlan:
    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._rng = random.Random(seed)

    def set_rules(self, rules: list[Mapping[str, Any]]) -> None:
        parsed = [FaultRule.from_dict(r) for r in rules]
        with self._lock:
            self._rules = parsed

    def add_rules(self, rules: list[Mapping[str, Any]]) -> None:
        parsed = [FaultRule.from_dict(r) for r in rules]
        with self._lock:
            self._rules.extend(parsed)

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def rules(self) -> list[dict]:
        with self._lock:
            return [dict(r.__dict__) for r in self._rules]

    def pick(self, service: str, operation: str, payload: Any) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if not rule.matches(service, operation, payload):
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                if rule.times is not None:
                    rule.times -= 1
                return rule
        return None


# The upstreams' wall clock; seeded dates hang off its day (Service.day).
ISTANBUL = ZoneInfo("Europe/Istanbul")


class Service:
    """Base of a simulated upstream. Subclasses keep their own state behind `self.lock`."""

    name: str = ""
    prefix: str = ""  # URL prefix the server routes to this service, e.g. "/paynet"
    # The day seeded dates hang off; None follows the clock at each reset. A pinned day makes a
    # reset give the same state across midnight (a test run that crosses it).
    day: date | None = None

    def __init__(self, *, seed: int, ledger: Ledger) -> None:
        self.seed = seed
        self.ledger = ledger
        self.lock = threading.RLock()
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Rebuild the seeded state."""
        raise NotImplementedError

    def operation_of(self, request: Request) -> str:
        """The upstream operation name of a request, used by fault rules and the ledger."""
        raise NotImplementedError

    def payload_of(self, request: Request) -> Any:
        """The parsed body (or query) that fault rules match on; None when it cannot be parsed."""
        try:
            return request.json()
        except BadRequestBody:
            return None

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def reject(self, operation: str, message: str | None) -> Response:
        """The upstream's business refusal for this operation (fault kind "reject")."""
        raise NotImplementedError

    def partial_reject(self, operation: str, request: Request, rule: FaultRule) -> Response | None:
        """Fault kind "reject" with `match`: refuse only the matched part of the request.

        For upstreams that answer per item (Payofin's multiple query). Called under self.lock in
        place of handle(); the service processes the unmatched part itself, so `apply` is moot.
        None (the default) means the whole-request refusal of reject().
        """
        return None

    def server_error(self, operation: str, status: int) -> Response:
        """The upstream's body for an HTTP 5xx (fault kind "status")."""
        return Response.json(status, {"error": "server error"})

    def record(self, operation: str, request: Any, **details: Any) -> dict:
        return self.ledger.record(self.name, operation, request, **details)

    def state(self) -> Any:
        """A JSON-able view of the state, for debugging and tests."""
        return {}

    def command(self, data: Mapping[str, Any]) -> Any:
        """A control command (POST /_sandbox/state/<service>), e.g. seeding more volume.

        Raise ValueError with a readable message for an unknown or bad command.
        """
        raise ValueError(f"{self.name} takes no commands")
