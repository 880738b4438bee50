"""The sandbox HTTP server: routes each request to a simulated upstream, injects latency and faults.

Control endpoints (not part of any upstream):
  GET    /_sandbox/health                 {"ok": true, "services": [...]}
  GET    /_sandbox/ledger?service=&operation=
  GET    /_sandbox/requests?service=&operation=   every request's arrival time (rate caps)
  GET    /_sandbox/inflight               per service: requests being served now and the most
                                          at once since the last reset (concurrency caps)
  DELETE /_sandbox/inflight               forget the maxima
  GET    /_sandbox/faults                 the active fault rules
  POST   /_sandbox/faults                 {"rules": [...], "replace": true}   (see core.FaultRule)
  DELETE /_sandbox/faults
  POST   /_sandbox/latency                {"latency_ms": 50}
  POST   /_sandbox/reset                  {"seed": 1}  fresh seeded state, empty ledger, no faults
  GET    /_sandbox/state/<service>        the service's state (debugging, tests)
  POST   /_sandbox/state/<service>        a service command, e.g. {"command": "seed_bulk", ...}
  POST   /_sandbox/tamper                 {"service": "paynet"|"wisecp", ...} a change made behind
                                          the product's back (Paynet's panel, WiseCP's admin)
"""

from __future__ import annotations

import contextlib
import email.message
import json
import logging
import socket
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .core import (
    FaultPlan,
    FaultRule,
    InFlight,
    Ledger,
    Request,
    RequestLog,
    Response,
    Service,
)

logger = logging.getLogger("sandbox")

CONTROL_PREFIX = "/_sandbox"


def default_services(seed: int, ledger: Ledger) -> list[Service]:
    services: list[Service] = []
    # Each upstream lives in its own module; a missing one is simply not served.
    for module, cls in (
        ("paynet", "PaynetService"),
        ("wisecp", "WiseCPService"),
        ("payofin", "PayofinService"),
    ):
        try:
            mod = __import__(f"sandbox.{module}", fromlist=[cls])
        except ModuleNotFoundError as exc:
            if exc.name != f"sandbox.{module}":
                raise
            continue
        services.append(getattr(mod, cls)(seed=seed, ledger=ledger))
    return services


class Sandbox:
    """The state behind the server: services, ledger, faults, latency."""

    def __init__(
        self, *, seed: int = 1, latency_ms: float = 0, services: list[Service] | None = None
    ):
        self.seed = seed
        self.latency_ms = latency_ms
        self.ledger = Ledger()
        self.requests = RequestLog()
        self.inflight = InFlight()
        self.faults = FaultPlan(seed)
        self.services = services if services is not None else default_services(seed, self.ledger)
        for service in self.services:
            service.ledger = self.ledger

    def service_for(self, path: str) -> tuple[Service, str] | None:
        for service in self.services:
            if path == service.prefix or path.startswith(service.prefix + "/"):
                return service, path[len(service.prefix) :] or "/"
        return None

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = seed
        self.ledger.clear()
        self.requests.clear()
        self.inflight.clear()
        self.faults = FaultPlan(self.seed)
        for service in self.services:
            with service.lock:
                service.seed = self.seed
                service.reset(self.seed)


class _Drop(Exception):
    """Close the connection without answering."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Keep-alive answers must not wait for Nagle + delayed ACK (about 40 ms a call).
    disable_nagle_algorithm = True
    server: SandboxHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _dispatch(self) -> None:
        sandbox = self.server.sandbox
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=self.headers if isinstance(self.headers, email.message.Message) else {},
            body=body,
            client_ip=self.client_address[0],
        )
        try:
            if parts.path.startswith(CONTROL_PREFIX):
                response = self._control(sandbox, request)
            else:
                response = self._upstream(sandbox, request)
        except _Drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        head = [f"HTTP/1.1 {response.status} {self.responses.get(response.status, ('',))[0]}"]
        headers = {
            "Content-Type": response.content_type,
            "Content-Length": str(len(response.body)),
            **response.headers,
        }
        head += [f"{k}: {v}" for k, v in headers.items()]
        # One send for head and body: no partial writes for Nagle to hold back.
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)

    def _upstream(self, sandbox: Sandbox, request: Request) -> Response:
        routed = sandbox.service_for(request.path)
        if routed is None:
            return Response.json(404, {"error": f"no sandbox service at {request.path}"})
        service, subpath = routed
        request.path = subpath
        operation = service.operation_of(request)
        sandbox.requests.record(service.name, operation)
        sandbox.inflight.enter(service.name)
        try:
            return self._serve(sandbox, service, request, operation)
        finally:
            # Before the answer is written (see InFlight).
            sandbox.inflight.leave(service.name)

    def _serve(
        self, sandbox: Sandbox, service: Service, request: Request, operation: str
    ) -> Response:
        rule = sandbox.faults.pick(service.name, operation, service.payload_of(request))
        delay = sandbox.latency_ms / 1000.0
        if rule is not None and rule.kind == "latency":
            delay += rule.seconds or 1.0
        if delay:
            time.sleep(delay)
        if rule is None or rule.kind == "latency":
            return self._handle(service, request)
        if rule.kind == "reject" and rule.match:
            partial = self._partial_reject(service, request, operation, rule)
            if partial is not None:
                return partial
        if rule.apply:
            self._handle(service, request)
        if rule.kind == "timeout":
            time.sleep(30.0 if rule.seconds is None else rule.seconds)
            raise _Drop
        if rule.kind == "drop":
            raise _Drop
        if rule.kind == "status":
            return service.server_error(operation, rule.status)
        if rule.kind == "malformed":
            return Response.raw(200, b'{"status": "succ<html>Gateway', "application/json")
        if rule.kind == "rate_limit":
            retry = rule.seconds if rule.seconds is not None else 1
            response = Response.json(429, {"message": "Too Many Requests"})
            response.headers["Retry-After"] = str(
                int(retry) if float(retry).is_integer() else retry
            )
            return response
        if rule.kind == "reject":
            return service.reject(operation, rule.message)
        raise AssertionError(rule.kind)

    def _handle(self, service: Service, request: Request) -> Response:
        try:
            with service.lock:
                return service.handle(request)
        except Exception:
            logger.exception(
                "sandbox %s crashed on %s %s", service.name, request.method, request.path
            )
            return service.server_error("unknown", 500)

    def _partial_reject(
        self, service: Service, request: Request, operation: str, rule: FaultRule
    ) -> Response | None:
        try:
            with service.lock:
                return service.partial_reject(operation, request, rule)
        except Exception:
            logger.exception("sandbox %s crashed on %s", service.name, request.path)
            return service.server_error(operation, 500)

    def _control(self, sandbox: Sandbox, request: Request) -> Response:
        path = request.path[len(CONTROL_PREFIX) :].rstrip("/")
        try:
            data = json.loads(request.body or b"{}")
        except json.JSONDecodeError:
            return Response.json(400, {"error": "body is not JSON"})
        q = {k: v[-1] for k, v in request.query.items()}
        if path == "/health":
            return Response.json(200, {"ok": True, "services": [s.name for s in sandbox.services]})
        if path == "/ledger":
            return Response.json(200, sandbox.ledger.entries(q.get("service"), q.get("operation")))
        if path == "/inflight":
            if request.method == "DELETE":
                sandbox.inflight.clear()
            return Response.json(200, sandbox.inflight.snapshot())
        if path == "/requests":
            entries = sandbox.requests.entries(q.get("service"), q.get("operation"))
            return Response.json(200, entries)
        if path == "/faults":
            if request.method == "DELETE":
                sandbox.faults.clear()
            elif request.method == "POST":
                try:
                    if data.get("replace", True):
                        sandbox.faults.set_rules(data.get("rules", []))
                    else:
                        sandbox.faults.add_rules(data.get("rules", []))
                except (TypeError, ValueError) as exc:
                    return Response.json(400, {"error": str(exc)})
            return Response.json(200, {"rules": sandbox.faults.rules()})
        if path == "/latency" and request.method == "POST":
            sandbox.latency_ms = float(data.get("latency_ms", 0))
            return Response.json(200, {"latency_ms": sandbox.latency_ms})
        if path == "/reset" and request.method == "POST":
            sandbox.reset(data.get("seed"))
            return Response.json(200, {"ok": True, "seed": sandbox.seed})
        if path == "/tamper" and request.method == "POST":
            for service in sandbox.services:
                if service.name == data.get("service") and hasattr(service, "tamper"):
                    with service.lock:
                        try:
                            return Response.json(200, service.tamper(data))
                        except (TypeError, ValueError) as exc:
                            return Response.json(400, {"error": str(exc)})
            return Response.json(400, {"error": "tamper: service is paynet or wisecp"})
        if path.startswith("/state/"):
            name = path.removeprefix("/state/")
            for service in sandbox.services:
                if service.name == name:
                    with service.lock:
                        if request.method == "POST":
                            try:
                                return Response.json(200, service.command(data))
                            except ValueError as exc:
                                return Response.json(400, {"error": str(exc)})
                        return Response.json(200, service.state())
        return Response.json(404, {"error": f"unknown control endpoint {path}"})


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: Sandbox):
        self.sandbox = sandbox
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def start_in_thread(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int = 1,
    latency_ms: float = 0,
    day: date | None = None,
) -> SandboxHTTPServer:
    """Start a sandbox on a free port in a daemon thread (tests, benchmarks).

    `day`: the day seeded dates hang off, for every reset (None: the day of each reset)."""
    sandbox = Sandbox(seed=seed, latency_ms=latency_ms)
    if day is not None:
        for service in sandbox.services:
            service.day = day
        sandbox.reset()
    server = SandboxHTTPServer((host, port), sandbox)
    threading.Thread(target=server.serve_forever, name="sandbox", daemon=True).start()
    return server


def serve(*, host: str, port: int, seed: int, latency_ms: float) -> None:
    server = SandboxHTTPServer((host, port), Sandbox(seed=seed, latency_ms=latency_ms))
    names = ", ".join(f"{s.name} at {server.url}{s.prefix}" for s in server.sandbox.services)
    print(f"Sandbox serving {names}; control at {server.url}{CONTROL_PREFIX}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
