"""Simulated WiseCP installation: the legacy `Billing/*` action API for invoices and their items.

The contract is /work/shared/upstreams/wisecp.md; "§10.n" below means its ASSUMPTION n.

URL forms (§10.14), below the service prefix "/wisecp":
    /api/Billing/<Action>[/<ID>]            and    /index.php/api/Billing/<Action>[/<ID>]
so the product's WISECP_API_URL is http://127.0.0.1:8001/wisecp/api/.

Actions: GetInvoices (GET), GetInvoice/{invoiceId} (GET), UpdateInvoiceItem/{itemId} (PUT),
CreateInvoiceItem/{invoiceId} (POST), DeleteInvoiceItem/{itemId} (DELETE).

Choices the contract leaves open, made here:
  * Checks run in this order: unknown path 404, `Apikey` 401, allowed IP 403, unknown action 404,
    permission 403, HTTP verb 405, then the action (bad JSON 400, unknown id 404, fields 400).
  * A path id that is missing or not all digits is treated like an unknown id (404), the way
    PHP's (int) cast turns it into 0.
  * Field types are strict: ints must be JSON integers (not strings, floats or booleans), money
    must be JSON numbers, NaN/Infinity are bad JSON. Unknown body fields are ignored.
  * Negative `amount`/`total` are allowed (discount lines); negative `quantity`/`order_id` are not.
  * GetInvoices: date filters are inclusive and never match a zero date; blank query parameters
    count as not given; unknown filters are ignored; a bad value of a known one is 400.
  * Server errors (fault kind "status", crashes) answer an nginx-style HTML page, as a PHP
    installation behind nginx does: clients must not expect JSON on a 5xx.
  * The allowed-IP list applies to every credential of the installation.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import os
import random
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from http import HTTPStatus
from typing import Any

from .core import Ledger, Request, Response, Service

DEFAULT_API_KEY = "sandbox-wisecp-api-key"
READONLY_API_KEY = "sandbox-wisecp-readonly-key"
ZERO_DATE = "0000-00-00 00:00:00"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
STATUSES = ("unpaid", "pending", "paid", "refunded", "cancelled")
LOCKED_STATUSES = ("paid", "refunded", "cancelled")  # read-only only with "readonly_paid" (§10.9)

# action -> (HTTP verb, takes a path id)
ACTIONS: dict[str, tuple[str, bool]] = {
    "GetInvoices": ("GET", False),
    "GetInvoice": ("GET", True),
    "UpdateInvoiceItem": ("PUT", True),
    "CreateInvoiceItem": ("POST", True),
    "DeleteInvoiceItem": ("DELETE", True),
}
WRITE_ACTIONS = ("UpdateInvoiceItem", "CreateInvoiceItem", "DeleteInvoiceItem")

# Item fields in the order the docs' samples print them (§4).
ITEM_FIELDS = (
    "id",
    "sequence",
    "owner_id",
    "description",
    "quantity",
    "tax_exempt",
    "amount",
    "total",
    "order_id",
    "due_date",
    "attributes",
)
# Fields a client may send on create/update (§5.1, §5.2) and their JSON type.
WRITABLE_FIELDS: dict[str, str] = {
    "owner_id": "int",  # update only: moves the item (§7.3)
    "sequence": "int",
    "description": "str",
    "quantity": "int",
    "tax_exempt": "bool",
    "amount": "money",
    "total": "money",
    "order_id": "int",
    "due_date": "date",
    "attributes": "object",
}

# Accepts "/api/Billing/GetInvoice/5", "/index.php/api/Billing/GetInvoices/" and the like (§10.14).
_ROUTE = re.compile(
    r"^(?:/index\.php)?/api/(?P<group>[^/]+)/(?P<action>[^/]+)(?:/(?P<id>[^/]*))?/?$"
)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_CENT = Decimal("0.01")

SORT_FIELDS = ("id", "number", "created_at", "due_date", "payment_date", "total")
BOOL_FILTERS = {"local": "local", "taxfree": "taxfree", "formalized": "formalize"}
DATE_FILTERS = ("created_at", "due_date", "payment_date", "refund_date")

REJECT_MESSAGES = {
    "GetInvoices": "Invoices could not be listed",
    "GetInvoice": "Invoice could not be read",
    "UpdateInvoiceItem": "Invoice item could not be updated",
    "CreateInvoiceItem": "Invoice item could not be created",
    "DeleteInvoiceItem": "Invoice item could not be deleted",
}


class ApiError(Exception):
    """An error answer in the legacy envelope: {"status": "error", "message": ...}."""

    def __init__(self, status: int, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class RawJSON(str):
    """JSON text emitted verbatim (money with binary-float noise, §3)."""


def dumps(obj: Any) -> str:
    """json.dumps that emits RawJSON values as they are; compact like PHP's json_encode."""
    if isinstance(obj, RawJSON):
        return str(obj)
    if isinstance(obj, Mapping):
        inner = ",".join(
            f"{json.dumps(str(k), ensure_ascii=False)}:{dumps(v)}" for k, v in obj.items()
        )
        return "{" + inner + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    return json.dumps(obj, ensure_ascii=False)


def money_text(value: Decimal, *, noise: bool) -> str:
    """A rounded amount as JSON number text.

    With noise the text is the exact value of the nearest binary double, which is what the real
    API prints (§3: 3.78 -> 3.779999999999999804600747665972448885440826416015625).
    """
    value = value.quantize(_CENT, rounding=ROUND_HALF_UP) + 0  # "+ 0" turns -0.00 into 0.00
    if noise:
        return str(Decimal(float(value)))
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _dec(value: int | float) -> Decimal:
    return Decimal(str(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    # json.loads turns 1e400 into inf; that is no amount either.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _valid_date(value: str) -> bool:
    if value == ZERO_DATE:
        return True
    if not _DATE_RE.match(value):
        return False
    try:
        datetime.strptime(value, DATE_FORMAT)
    except ValueError:
        return False
    return True


def _set_totals(invoice: dict[str, Any], items: list[Mapping[str, Any]]) -> None:
    """Invoice totals from its items (§10.8), kept as 2-decimal Decimals.

    subtotal = Σ total; tax = Σ total of non-exempt items × tax_rate / 100 (0 when taxfree);
    total = subtotal + tax.
    """
    subtotal = sum((_dec(i["total"]) for i in items), Decimal(0))
    taxable = sum((_dec(i["total"]) for i in items if not i["tax_exempt"]), Decimal(0))
    tax = Decimal(0) if invoice["taxfree"] else taxable * _dec(invoice["tax_rate"]) / 100
    subtotal = subtotal.quantize(_CENT, rounding=ROUND_HALF_UP)
    tax = tax.quantize(_CENT, rounding=ROUND_HALF_UP)
    invoice["subtotal"], invoice["tax"], invoice["total"] = subtotal, tax, subtotal + tax


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class WiseCPService(Service):
    name = "wisecp"
    prefix = "/wisecp"

    def __init__(self, *, seed: int, ledger: Ledger, float_noise: bool = True) -> None:
        # Set before Service.__init__, which calls reset().
        self.float_noise_default = float_noise
        full_key = os.environ.get("WISECP_API_KEY", DEFAULT_API_KEY)
        # key -> granted actions (§1: per-action permissions; §10.3)
        self.credentials: dict[str, frozenset[str]] = {
            full_key: frozenset(f"Billing/{a}" for a in ACTIONS),
            READONLY_API_KEY: frozenset({"Billing/GetInvoice", "Billing/GetInvoices"}),
        }
        self.invoices: dict[int, dict[str, Any]] = {}
        self.items: dict[int, dict[str, Any]] = {}
        self.items_of: dict[int, list[int]] = {}
        super().__init__(seed=seed, ledger=ledger)

    # ----------------------------------------------------------------- framework hooks

    def reset(self, seed: int) -> None:
        self.allowed_ips: list[str] = []  # empty = any IP (§10.2)
        self.readonly_paid = False  # §10.9
        self.float_noise = self.float_noise_default  # §10.8
        self.invoices, self.items, self.items_of = _seed_data(seed)
        self.next_item_id = max(self.items, default=1000) + 1

    def operation_of(self, request: Request) -> str:
        match = _ROUTE.match(request.path)
        if match is None:
            return "unknown"
        return match["action"]

    def payload_of(self, request: Request) -> Any:
        """The JSON body (or, for reads, the query) plus {"id": <path id>} for fault matching."""
        payload: dict[str, Any] = {}
        if request.method == "GET":
            payload.update({k: v[-1] for k, v in request.query.items() if v})
        else:
            try:
                body = json.loads(request.body.decode("utf-8")) if request.body.strip() else None
            except (UnicodeDecodeError, ValueError):
                body = None
            if isinstance(body, dict):
                payload.update(body)
        match = _ROUTE.match(request.path)
        if match is not None and match["id"]:
            path_id = match["id"]
            payload["id"] = int(path_id) if path_id.isdigit() else path_id
        return payload

    def handle(self, request: Request) -> Response:
        try:
            return self._route(request)
        except ApiError as exc:
            return self._envelope(
                exc.status, {"status": "error", "message": exc.message}, **exc.headers
            )

    def reject(self, operation: str, message: str | None) -> Response:
        # The legacy API answers business refusals with HTTP 200 and status "error" (§2).
        text = message or REJECT_MESSAGES.get(operation, "The request could not be processed")
        return self._envelope(200, {"status": "error", "message": text})

    def server_error(self, operation: str, status: int) -> Response:
        # What nginx in front of a failing PHP-FPM answers: HTML, not the JSON envelope.
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Server Error"
        html = (
            f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n"
        )
        return Response.raw(status, html.encode("utf-8"), "text/html; charset=utf-8")

    def state(self) -> Any:
        return {
            "allowed_ips": list(self.allowed_ips),
            "readonly_paid": self.readonly_paid,
            "float_noise": self.float_noise,
            "invoices": [
                json.loads(dumps(self._invoice_out(inv, with_items=True, noise=False)))
                for inv in sorted(self.invoices.values(), key=lambda i: i["id"])
            ],
        }

    def command(self, data: Mapping[str, Any]) -> Any:
        name = data.get("command")
        if name == "set_allowed_ips":
            ips = data.get("ips")
            if not isinstance(ips, list) or not all(isinstance(ip, str) for ip in ips):
                raise ValueError("'ips' must be a list of IP address strings")
            for ip in ips:
                ipaddress.ip_address(ip)  # ValueError names the bad address
            self.allowed_ips = list(ips)
            return {"allowed_ips": self.allowed_ips}
        if name in ("readonly_paid", "float_noise"):
            value = data.get("value")
            if not isinstance(value, bool):
                raise ValueError(f"{name}: 'value' must be true or false")
            setattr(self, name, value)
            return {name: value}
        raise ValueError(
            f"unknown wisecp command {name!r}; one of set_allowed_ips, readonly_paid, float_noise"
        )

    def tamper(self, data: Mapping[str, Any]) -> Any:
        """Change or delete an item behind the product's back, as WiseCP's admin would.

        {"item_id", "fields": {"amount", "total", "quantity", "description", "owner_id"}} or
        {"item_id", "delete": true}; the invoices' totals follow.
        """
        item = self.items.get(int(data.get("item_id") or 0))
        if item is None:
            raise ValueError(f"no item {data.get('item_id')!r}")
        owner = item["owner_id"]
        if data.get("delete"):
            del self.items[item["id"]]
            self.items_of[owner].remove(item["id"])
            self._recompute(owner)
            return {"deleted": item["id"]}
        fields = dict(data.get("fields") or {})
        unknown = set(fields) - {"amount", "total", "quantity", "description", "owner_id"}
        if unknown:
            raise ValueError(f"tamper: cannot change {sorted(unknown)}")
        new_owner = fields.pop("owner_id", owner)
        if new_owner not in self.invoices:
            raise ValueError(f"no invoice {new_owner!r}")
        item.update(fields)
        if new_owner != owner:
            item["owner_id"] = new_owner
            self.items_of[owner].remove(item["id"])
            self.items_of[new_owner].append(item["id"])
            self._recompute(new_owner)
        self._recompute(owner)
        return self._item_out(item)

    # ----------------------------------------------------------------- routing and access

    def _route(self, request: Request) -> Response:
        match = _ROUTE.match(request.path)
        if match is None:
            raise ApiError(404, "Not found")
        group, action, path_id = match["group"], match["action"], match["id"] or None

        key = request.header("Apikey") or ""
        granted = next(
            (
                perms
                for k, perms in self.credentials.items()
                if hmac.compare_digest(k.encode(), key.encode("utf-8", "replace"))
            ),
            None,
        )
        if not key or granted is None:
            raise ApiError(401, "Invalid API key")  # §10.1
        if self.allowed_ips and request.client_ip not in self.allowed_ips:
            raise ApiError(403, "IP address not allowed")  # §10.2
        # Action names are case-sensitive (§10.14).
        if group != "Billing" or action not in ACTIONS:
            raise ApiError(404, f"Unknown API action: {group}/{action}")
        verb, takes_id = ACTIONS[action]
        if not takes_id and path_id is not None:
            raise ApiError(404, f"Unknown API action: {group}/{action}/{path_id}")
        if f"Billing/{action}" not in granted:
            raise ApiError(403, f"No permission for Billing/{action}")  # §10.3
        if request.method != verb:
            raise ApiError(
                405,
                f"Method {request.method} not allowed for Billing/{action}; use {verb}",
                Allow=verb,
            )

        if action == "GetInvoices":
            return self._get_invoices(request)
        ident = int(path_id) if path_id is not None and path_id.isdigit() else 0
        if action == "GetInvoice":
            return self._get_invoice(ident)
        if action == "UpdateInvoiceItem":
            return self._update_item(ident, request)
        if action == "CreateInvoiceItem":
            return self._create_item(ident, request)
        return self._delete_item(ident, request)

    # ----------------------------------------------------------------- reads

    def _get_invoice(self, invoice_id: int) -> Response:
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise ApiError(404, "Invoice not found")  # §10.4
        return self._ok(self._invoice_out(invoice, with_items=True))

    def _get_invoices(self, request: Request) -> Response:
        # A blank parameter (e.g. "filter[status]=" from a form) counts as not given.
        q = {k: v[-1] for k, v in request.query.items() if v and v[-1] != ""}
        page = self._query_int(q, "page", 1)
        limit = self._query_int(q, "limit", 10)
        page = max(page, 1)
        limit = min(max(limit, 1), 50)  # clamped, §10.11

        sort = q.get("sort", "id")
        if sort not in SORT_FIELDS:
            raise ApiError(400, f"'sort' must be one of {', '.join(SORT_FIELDS)}")
        sort_type = q.get("sort_type", "DESC").upper()
        if sort_type not in ("ASC", "DESC"):
            raise ApiError(400, "'sort_type' must be ASC or DESC")

        rows = list(self.invoices.values())
        status = q.get("filter[status]", "all")
        if status != "all":
            if status not in STATUSES:
                raise ApiError(400, f"'filter[status]' must be all or one of {', '.join(STATUSES)}")
            rows = [r for r in rows if r["status"] == status]
        for param, field in BOOL_FILTERS.items():
            value = q.get(f"filter[{param}]", "none")
            if value not in ("none", "true", "false"):
                raise ApiError(400, f"'filter[{param}]' must be none, true or false")
            if value != "none":
                rows = [r for r in rows if r[field] is (value == "true")]
        if "filter[id]" in q:
            wanted = self._query_int(q, "filter[id]", 0)
            rows = [r for r in rows if r["id"] == wanted]
        for field in DATE_FILTERS:
            for edge in ("from", "to"):
                param = f"filter[{field}_{edge}]"
                if param not in q:
                    continue
                bound = q[param]
                if bound == ZERO_DATE or not _valid_date(bound):
                    raise ApiError(
                        400, f"'{param}' must be a date in the format YYYY-MM-DD HH:ii:ss"
                    )
                # Zero dates mean "unset" and never fall inside a range.
                if edge == "from":
                    rows = [r for r in rows if r[field] != ZERO_DATE and r[field] >= bound]
                else:
                    rows = [r for r in rows if r[field] != ZERO_DATE and r[field] <= bound]

        def sort_key(r: dict[str, Any]) -> tuple[Any, int]:
            if sort in ("id", "number"):
                return (r["id"], r["id"])
            return (r[sort], r["id"])

        rows.sort(key=sort_key, reverse=sort_type == "DESC")
        start = (page - 1) * limit
        chunk = rows[start : start + limit]
        return self._ok(
            {
                "invoices": [self._invoice_out(r, with_items=False) for r in chunk],
                "total": len(rows),
                "page": page,
                "limit": limit,
            }
        )

    @staticmethod
    def _query_int(q: Mapping[str, str], name: str, default: int) -> int:
        raw = q.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise ApiError(400, f"'{name}' must be an integer") from None

    # ----------------------------------------------------------------- writes

    def _update_item(self, item_id: int, request: Request) -> Response:
        body = self._json_object(request)
        item = self.items.get(item_id)
        if item is None:
            raise ApiError(404, "Invoice item not found")  # §10.4
        fields = self._validated(body)
        old_owner = item["owner_id"]
        new_owner = fields.get("owner_id", old_owner)
        if new_owner not in self.invoices:
            raise ApiError(400, f"owner_id {new_owner}: invoice not found")  # §10.5
        self._check_editable(old_owner)
        if new_owner != old_owner:
            self._check_editable(new_owner)

        # Partial update (§10.6): only sent fields change; amount without total sets total.
        if "amount" in fields and "total" not in fields:
            fields["total"] = fields["amount"]
        changed = [f for f in ITEM_FIELDS if f in fields and fields[f] != item[f]]
        item.update(fields)
        if new_owner != old_owner:
            self.items_of[old_owner].remove(item_id)
            self.items_of[new_owner].append(item_id)
            self._recompute(old_owner)  # a move recomputes both invoices (§10.8)
        self._recompute(new_owner)

        details: dict[str, Any] = {}
        if new_owner != old_owner:
            details["from_invoice_id"] = old_owner
        self.record(
            "UpdateInvoiceItem",
            body,
            item_id=item_id,
            invoice_id=new_owner,
            changed_fields=changed,
            **details,
        )
        return self._ok(self._item_out(item))  # §10.12

    def _create_item(self, invoice_id: int, request: Request) -> Response:
        body = self._json_object(request)
        if invoice_id not in self.invoices:
            raise ApiError(404, "Invoice not found")  # §10.4
        # The path names the invoice (§7.4); an owner_id in the body is not a create field.
        fields = self._validated({k: v for k, v in body.items() if k != "owner_id"})
        if not isinstance(fields.get("description"), str) or not fields["description"].strip():
            raise ApiError(400, "'description' is required")
        if "amount" not in fields:
            raise ApiError(400, "'amount' is required")
        self._check_editable(invoice_id)

        siblings = [self.items[i]["sequence"] for i in self.items_of[invoice_id]]
        item_id = self.next_item_id
        self.next_item_id += 1
        # Defaults of §10.6 / §10.7.
        item = {
            "id": item_id,
            "sequence": fields.get("sequence", max(siblings, default=0) + 1),
            "owner_id": invoice_id,
            "description": fields["description"],
            "quantity": fields.get("quantity", 1),
            "tax_exempt": fields.get("tax_exempt", False),
            "amount": fields["amount"],
            "total": fields.get("total", fields["amount"]),
            "order_id": fields.get("order_id", 0),
            "due_date": fields.get("due_date", ZERO_DATE),
            "attributes": fields.get("attributes", {}),
        }
        self.items[item_id] = item
        self.items_of[invoice_id].append(item_id)
        self._recompute(invoice_id)
        # No idempotency (§10.13): a repeated create is another item and another entry.
        self.record(
            "CreateInvoiceItem",
            body,
            item_id=item_id,
            invoice_id=invoice_id,
            changed_fields=[f for f in ITEM_FIELDS if f != "id"],
        )
        return self._ok(self._item_out(item))

    def _delete_item(self, item_id: int, request: Request) -> Response:
        item = self.items.get(item_id)
        if item is None:
            raise ApiError(404, "Invoice item not found")
        invoice_id = item["owner_id"]
        self._check_editable(invoice_id)
        del self.items[item_id]
        self.items_of[invoice_id].remove(item_id)
        self._recompute(invoice_id)
        try:
            body = json.loads(request.body) if request.body.strip() else None
        except ValueError:
            body = None
        self.record(
            "DeleteInvoiceItem", body, item_id=item_id, invoice_id=invoice_id, changed_fields=[]
        )
        return self._envelope(200, {"status": "successful"})  # no data, like DeleteInvoice (§10.10)

    def _check_editable(self, invoice_id: int) -> None:
        status = self.invoices[invoice_id]["status"]
        if self.readonly_paid and status in LOCKED_STATUSES:
            raise ApiError(400, f"Invoice #{invoice_id} is {status}; its items cannot be changed")

    @staticmethod
    def _json_object(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.body.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "Invalid JSON body") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object")
        return body

    @staticmethod
    def _validated(body: Mapping[str, Any]) -> dict[str, Any]:
        """Type-check the writable fields present in the body (§10.5); others are ignored."""
        clean: dict[str, Any] = {}
        for name, kind in WRITABLE_FIELDS.items():
            if name not in body:
                continue
            value = body[name]
            if kind == "int" and not _is_int(value):
                raise ApiError(400, f"'{name}' must be an integer")
            if kind == "money" and not _is_number(value):
                raise ApiError(400, f"'{name}' must be a number")
            if kind == "str" and not isinstance(value, str):
                raise ApiError(400, f"'{name}' must be a string")
            if kind == "bool" and not isinstance(value, bool):
                raise ApiError(400, f"'{name}' must be true or false")
            if kind == "object" and not isinstance(value, dict):
                raise ApiError(400, f"'{name}' must be an object")
            if kind == "date" and not (isinstance(value, str) and _valid_date(value)):
                raise ApiError(400, f"'{name}' must be a date in the format YYYY-MM-DD HH:ii:ss")
            if name in ("quantity", "order_id") and value < 0:
                raise ApiError(400, f"'{name}' must not be negative")
            clean[name] = value
        return clean

    def _recompute(self, invoice_id: int) -> None:
        _set_totals(self.invoices[invoice_id], [self.items[i] for i in self.items_of[invoice_id]])

    # ----------------------------------------------------------------- rendering

    def _item_out(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {f: item[f] for f in ITEM_FIELDS}

    def _invoice_out(
        self, invoice: Mapping[str, Any], *, with_items: bool, noise: bool | None = None
    ) -> dict[str, Any]:
        noise = self.float_noise if noise is None else noise
        out: dict[str, Any] = {}
        for key, value in invoice.items():
            if key in ("subtotal", "tax", "total"):
                out[key] = RawJSON(money_text(value, noise=noise))
            elif key == "user" and not with_items:
                # List entries carry only the user's id and name (§10.11).
                out[key] = {"id": value["id"], "full_name": value["full_name"]}
            else:
                out[key] = value
        if with_items:
            items = sorted(
                (self.items[i] for i in self.items_of[invoice["id"]]),
                key=lambda i: (i["sequence"], i["id"]),
            )
            out["items"] = [self._item_out(i) for i in items]
        return out

    def _ok(self, data: Any) -> Response:
        return self._envelope(200, {"status": "successful", "data": data})

    @staticmethod
    def _envelope(status: int, obj: Any, **headers: str) -> Response:
        return Response(status=status, body=dumps(obj).encode("utf-8"), headers=dict(headers))


# --------------------------------------------------------------------- seed data

# (first name, surname, company or "", city, district, currency, country)
CUSTOMERS: tuple[tuple[str, str, str, str, str, str, str], ...] = (
    ("Zeynep", "Kaya", "", "İstanbul", "Kadıköy", "TRY", "TR"),
    ("Mehmet", "Yılmaz", "", "Ankara", "Çankaya", "TRY", "TR"),
    ("Ayşe", "Demir", "", "İzmir", "Karşıyaka", "TRY", "TR"),
    ("Emre", "Şahin", "", "Bursa", "Nilüfer", "TRY", "TR"),
    ("Elif", "Çelik", "", "Antalya", "Muratpaşa", "TRY", "TR"),
    ("Burak", "Öztürk", "", "Eskişehir", "Tepebaşı", "TRY", "TR"),
    ("Selin", "Arslan", "", "İstanbul", "Beşiktaş", "TRY", "TR"),
    ("Can", "Aydın", "", "Trabzon", "Ortahisar", "TRY", "TR"),
    ("Merve", "Koç", "", "Konya", "Selçuklu", "TRY", "TR"),
    ("Oğuz", "Kurt", "", "Mersin", "Yenişehir", "TRY", "TR"),
    ("Ali", "Demir", "Demir Yazılım A.Ş.", "İstanbul", "Şişli", "TRY", "TR"),
    ("Hakan", "Erdoğan", "Anadolu Tekstil Ltd. Şti.", "Bursa", "Osmangazi", "TRY", "TR"),
    ("Seda", "Yıldız", "Ege Turizm ve Otelcilik A.Ş.", "İzmir", "Çeşme", "EUR", "TR"),
    ("Murat", "Güneş", "Karadeniz Lojistik Ltd. Şti.", "Samsun", "İlkadım", "TRY", "TR"),
    ("Gizem", "Aksoy", "Boğaziçi Dijital Ajans Ltd. Şti.", "İstanbul", "Beyoğlu", "TRY", "TR"),
    ("Kerem", "Polat", "Kapadokya Balon Turizm A.Ş.", "Nevşehir", "Ürgüp", "USD", "TR"),
    ("Derya", "Özkan", "Marmara Gıda San. ve Tic. A.Ş.", "Kocaeli", "İzmit", "TRY", "TR"),
    ("Tolga", "Kılıç", "Toros Mühendislik Ltd. Şti.", "Adana", "Seyhan", "USD", "TR"),
    ("Ahmet", "Yıldırım", "", "Berlin", "Kreuzberg", "EUR", "DE"),
    ("Leyla", "Acar", "Acar Consulting GmbH", "Köln", "Ehrenfeld", "EUR", "DE"),
    ("Cem", "Tekin", "Bosphorus Code LLC", "New York", "Brooklyn", "USD", "US"),
)
STREETS = ("Atatürk Cad.", "Cumhuriyet Mah.", "İnönü Sok.", "Bağdat Cad.")
COUNTRY_NAMES = {"TR": "Türkiye", "DE": "Germany", "US": "United States"}
TAX_OFFICES = ("Kadıköy", "Zincirlikuyu", "Boğaziçi Kurumlar", "Uludağ", "Ege", "Çankaya", "Seyhan")
NOTES = (
    "Havale ile ödendi, dekont müşteriden alındı.",
    "Müşteri talebiyle vade 7 gün uzatıldı.",
    "Yıllık paket indirimi uygulandı.",
    "Fatura e-Arşiv olarak düzenlendi.",
    "Yenileme hatırlatması e-posta ile gönderildi.",
)
# (description, TRY price, USD price, product type or "" for an unlinked line, period)
CATALOGUE: tuple[tuple[str, float, float, str, str], ...] = (
    ("Web Hosting - Yıllık ({domain})", 1499.00, 49.99, "hosting", "year"),
    ("Web Hosting - Aylık ({domain})", 149.90, 4.99, "hosting", "month"),
    ("Alan adı yenileme ({domain})", 449.90, 14.99, "domain", "year"),
    ("Alan adı kaydı ({other_domain})", 399.90, 12.99, "domain", "year"),
    ("SSL Sertifikası - PositiveSSL ({domain})", 599.00, 19.99, "ssl", "year"),
    ("Kurumsal E-posta - 10 Hesap - Yıllık", 1199.00, 39.99, "email", "year"),
    ("VPS Sunucu - 4 vCPU / 8 GB RAM - Aylık", 899.00, 29.99, "server", "month"),
    ("Dedicated Sunucu - Xeon E-2388G - Aylık", 6499.00, 199.00, "server", "month"),
    ("cPanel Lisansı - Aylık", 520.00, 17.99, "software", "month"),
    ("Alan adı gizlilik koruması ({domain})", 99.90, 3.99, "addon", "year"),
    ("Kurulum ücreti", 250.00, 9.00, "", ""),
    ("Teknik destek - saatlik", 750.00, 25.00, "", ""),
    ("Web sitesi taşıma hizmeti", 500.00, 19.00, "", ""),
    ("Bakiye yükleme", 1000.00, 50.00, "", ""),
)
PAYMENT_METHODS = ("Kredi Kartı (Paynet)", "Banka Havalesi / EFT", "Hesap Bakiyesi")
BANKS = ("Ziraat Bankası", "Garanti BBVA", "İş Bankası", "Yapı Kredi", "Akbank")
_ASCII = str.maketrans("çğıöşüÇĞİÖŞÜâ", "cgiosuCGIOSUa")
VAT_RAISE = datetime(2023, 7, 10)  # Turkish KDV went from 18 % to 20 % on 10 July 2023


def _slug(text: str) -> str:
    text = text.translate(_ASCII).lower()
    for suffix in (" a.s.", " ltd. sti.", " san. ve tic.", " gmbh", " llc"):
        text = text.replace(suffix, "")
    return re.sub(r"[^a-z0-9]", "", text)


def _tc_identity(rng: random.Random) -> str:
    """An 11-digit Turkish identity number that passes the official checksum."""
    d = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(8)]
    d.append(((d[0] + d[2] + d[4] + d[6] + d[8]) * 7 - (d[1] + d[3] + d[5] + d[7])) % 10)
    d.append(sum(d) % 10)
    return "".join(map(str, d))


def _fmt(moment: datetime) -> str:
    return moment.strftime(DATE_FORMAT)


def _users(rng: random.Random) -> list[dict[str, Any]]:
    users = []
    for n, (name, surname, company, city, district, _cur, country) in enumerate(CUSTOMERS):
        corporate = bool(company)
        domain_root = _slug(company) if corporate else _slug(name + surname)
        tld = ".com.tr" if country == "TR" else (".de" if country == "DE" else ".com")
        if corporate:
            email = f"muhasebe@{domain_root}{tld}"
        else:
            email = f"{_slug(name)}.{_slug(surname)}@{rng.choice(('gmail.com', 'hotmail.com'))}"
        phone_cc = {"TR": "90", "DE": "49", "US": "1"}[country]
        users.append(
            {
                "id": 2 + n * 3 + rng.randint(0, 2),
                "lang": "tr" if country == "TR" or rng.random() < 0.5 else "en",
                "identity": None if corporate or country != "TR" else _tc_identity(rng),
                "type": "corporate" if corporate else "individual",
                "name": name,
                "surname": surname,
                "full_name": f"{name} {surname}",
                "email": email,
                "phone": phone_cc + str(rng.randint(5_000_000_000, 5_599_999_999))[:10],
                "company_name": company,
                "company_tax_number": str(rng.randint(10**9, 10**10 - 1)) if corporate else "",
                "company_tax_office": rng.choice(TAX_OFFICES)
                if corporate and country == "TR"
                else "",
                "address": {
                    "country_code": country,
                    "country_name": COUNTRY_NAMES[country],
                    "city": city,
                    "state": district,
                    "detail": f"{rng.choice(STREETS)} No:{rng.randint(1, 180)}",
                    "zipcode": str(rng.randint(10000, 81999)),
                },
                # Not part of the user object; used to build items and stripped below.
                "_domain": domain_root + tld,
                "_currency": CUSTOMERS[n][5],
            }
        )
    return users


def _seed_data(
    seed: int,
) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]], dict[int, list[int]]]:
    """About 60 invoices with 1-6 items each, the same for the same seed."""
    rng = random.Random(seed)
    users = _users(rng)
    start, span_days = datetime(2023, 3, 1), 850
    moments = sorted(
        start + timedelta(days=rng.randrange(span_days), seconds=rng.randrange(8 * 3600, 22 * 3600))
        for _ in range(60)
    )
    invoices: dict[int, dict[str, Any]] = {}
    items: dict[int, dict[str, Any]] = {}
    items_of: dict[int, list[int]] = {}
    invoice_id, item_id = 300, 1500
    for n, created in enumerate(moments):
        invoice_id += rng.choice((1, 1, 1, 1, 2, 3))  # gaps: deleted invoices
        user = rng.choice(users)
        currency = user["_currency"]
        # Every legacy status appears at least once (§6.3).
        weighted = rng.choices(STATUSES, (30, 10, 40, 8, 12))[0]
        status = STATUSES[n // 12] if n % 12 == 0 else weighted
        local = user["address"]["country_code"] == "TR"
        # Services sold abroad are invoiced without KDV; a few domestic ones too.
        taxfree = not local or rng.random() < 0.04
        due = (created + timedelta(days=rng.choice((0, 3, 7, 10, 15)))).replace(
            hour=23, minute=59, second=0
        )
        paid_at = refund_at = None
        if status in ("paid", "pending", "refunded"):
            paid_at = created + timedelta(days=rng.randint(0, 9), seconds=rng.randrange(86400))
        if status == "refunded" and paid_at is not None:
            refund_at = paid_at + timedelta(days=rng.randint(1, 20), seconds=rng.randrange(86400))
        if status == "pending":
            method = "Banka Havalesi / EFT"  # pending = transfer awaiting confirmation
        elif paid_at is not None:
            method = rng.choice(PAYMENT_METHODS)
        else:
            method = "none"
        method_data: dict[str, Any] = {}
        if method.startswith("Kredi"):
            method_data = {"Transaction ID": f"PN{rng.randint(10**9, 10**10 - 1)}"}
        elif method.startswith("Banka"):
            method_data = {"Banka": rng.choice(BANKS)}
        formalize = status == "paid" and local and rng.random() < 0.6
        token = f"{rng.getrandbits(128):032x}"
        exchange = 1
        if currency == "USD":
            exchange = round(rng.uniform(27.0, 39.0), 4)
        elif currency == "EUR":
            exchange = round(rng.uniform(29.0, 44.0), 4)
        invoice: dict[str, Any] = {
            "id": invoice_id,
            "number": f"#{invoice_id}",
            "user": {k: v for k, v in user.items() if not k.startswith("_")},
            "taxation_type": "exclusive",
            "notes": rng.choice(NOTES) if rng.random() < 0.2 else "",
            "created_at": _fmt(created),
            "due_date": _fmt(due),
            "payment_date": _fmt(paid_at) if paid_at else ZERO_DATE,
            "refund_date": _fmt(refund_at) if refund_at else ZERO_DATE,
            "status": status,
            "formalize": formalize,
            "local": local,
            "taxfree": taxfree,
            "formalize_file": (
                f"https://musteri.ornekhosting.com.tr/resources/uploads/invoices/{token[:17]}.pdf"
                if formalize
                else ""
            ),
            "exchange_rate": exchange,
            "currency": currency,
            "tax_rate": 18 if created < VAT_RAISE else 20,
            "subtotal": Decimal(0),
            "tax": Decimal(0),
            "total": Decimal(0),
            "payment_method": method,
            "payment_method_data": method_data,
            "payment_method_commission": 0,
            "payment_method_commission_rate": 0,
            "send_bill_to_address": 0 if rng.random() < 0.95 else 25,
            "share": {
                "token": token,
                "link": f"https://musteri.ornekhosting.com.tr/invoice?token={token}",
            },
        }
        invoices[invoice_id] = invoice
        items_of[invoice_id] = []

        count = rng.choices((1, 2, 3, 4, 5, 6), (30, 25, 20, 12, 8, 5))[0]
        for sequence in range(1, count + 1):
            item_id += rng.choice((1, 1, 1, 2))
            desc, try_price, usd_price, kind, period = rng.choice(CATALOGUE)
            price = {"TRY": try_price, "USD": usd_price, "EUR": round(usd_price * 0.92, 2)}[
                currency
            ]
            quantity = rng.randint(2, 4) if desc.startswith("Teknik") else 1
            if desc == "Bakiye yükleme":
                top_ups = (250, 500, 1000, 2500) if currency == "TRY" else (20, 50, 100)
                price = float(rng.choice(top_ups))
            prefix = rng.choice(("yeni", "shop", "blog", "kampanya"))
            other = f"{prefix}{user['_domain'].split('.')[0]}.com"
            attributes: dict[str, Any] = {}
            order_id, item_due = 0, ZERO_DATE
            if kind:
                order_id = rng.randint(1000, 4999)
                renewal = rng.random() < 0.6
                if "yenileme" in desc or "kaydı" in desc:
                    renewal = "yenileme" in desc
                ends = created + (timedelta(days=365) if period == "year" else timedelta(days=30))
                # A linked item's due date is the service's end date (§4); a few are unset.
                item_due = _fmt(ends) if rng.random() < 0.85 else ZERO_DATE
                attributes = {
                    "event": "ExtendOrderPeriod" if renewal else "CreateOrder",
                    "type": kind,
                    "period": period,
                    "period_time": 1,
                }
                if kind in ("hosting", "domain", "ssl", "addon"):
                    attributes["domain"] = other if "other_domain" in desc else user["_domain"]
            items[item_id] = {
                "id": item_id,
                "sequence": sequence,
                "owner_id": invoice_id,
                "description": desc.format(domain=user["_domain"], other_domain=other),
                "quantity": quantity,
                # Balance top-ups carry no VAT; a few other lines are exempt too.
                "tax_exempt": desc == "Bakiye yükleme" or rng.random() < 0.06,
                "amount": price,
                "total": round(price * quantity, 2),
                "order_id": order_id,
                "due_date": item_due,
                "attributes": attributes,
            }
            items_of[invoice_id].append(item_id)

        _set_totals(invoice, [items[i] for i in items_of[invoice_id]])
        if method.startswith("Kredi"):
            # Card commission as charged at payment time; not part of `total` (§6.1).
            invoice["payment_method_commission_rate"] = 2.49
            invoice["payment_method_commission"] = float(
                (invoice["total"] * Decimal("0.0249")).quantize(_CENT, rounding=ROUND_HALF_UP)
            )
    return invoices, items, items_of
