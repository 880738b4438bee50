"""WiseCP's legacy `Billing/*` action API (shared/upstreams/wisecp.md). One method per action.

Methods return the parsed `data` of the envelope: money as 2-place Decimal, dates as aware
datetimes in Europe/Istanbul (None for the zero date), item and invoice dicts keyed like the
local models (`wisecp_id` for `id`; items keep `owner_id`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from upstream.calls.client import Exchange, UpstreamClient, sentence
from upstream.calls.errors import UpstreamRejectedError, UpstreamResponseError
from upstream.calls.parsing import ISTANBUL, ParseError, format_local, json_money, parse_local
from upstream.l10n.stored import text

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # PHP Y-m-d H:i:s (wisecp.md §3)
ZERO_DATE = "0000-00-00 00:00:00"
PAGE_LIMIT = 50  # GetInvoices clamps limit to 1-50 (wisecp.md §6.2)
MONEY_FIELDS = ("amount", "total")


def to_money(value: Any) -> Decimal:
    """WiseCP prints computed amounts as the exact value of the binary double (wisecp.md §3:
    3.779999999999999804600747665972448885440826416015625 for 3.78); read it as the cent meant."""
    return json_money(value)


def parse_datetime(value: Any) -> datetime | None:
    if value in (None, "", ZERO_DATE):
        return None
    if not isinstance(value, str):
        raise ParseError(f"not a WiseCP date: {value!r}")
    return parse_local(value, (DATETIME_FORMAT,))


def format_datetime(value: datetime | date | None) -> str:
    """Outgoing dates in the upstream's format and zone; None is the zero date (unset)."""
    if value is None:
        return ZERO_DATE
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, 23, 59, 59, tzinfo=ISTANBUL)
    return format_local(value, DATETIME_FORMAT)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ParseError(f"not an integer: {value!r}")
    return int(value)


def parse_item(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ParseError("an invoice item is not an object")
    attributes = raw.get("attributes") or {}
    return {
        "wisecp_id": _int(raw["id"]),
        "owner_id": _int(raw["owner_id"]),
        "sequence": _int(raw.get("sequence") or 0),
        "description": str(raw.get("description") or ""),
        "quantity": _int(raw.get("quantity", 1)),
        "tax_exempt": bool(raw.get("tax_exempt", False)),
        "amount": to_money(raw.get("amount", 0)),
        "total": to_money(raw.get("total", 0)),
        "order_id": _int(raw.get("order_id") or 0),
        "due_date": parse_datetime(raw.get("due_date")),
        # PHP's json_encode prints an empty array for an empty object.
        "attributes": dict(attributes) if isinstance(attributes, Mapping) else {},
    }


def parse_invoice(raw: Any) -> dict[str, Any]:
    """An invoice of GetInvoice (with `items`) or of a GetInvoices page (items is None)."""
    if not isinstance(raw, Mapping):
        raise ParseError("an invoice is not an object")
    user = raw.get("user") if isinstance(raw.get("user"), Mapping) else {}
    items = raw.get("items")
    return {
        "wisecp_id": _int(raw["id"]),
        "number": str(raw.get("number") or ""),
        "status": str(raw.get("status") or ""),
        "currency": str(raw.get("currency") or "")[:3],
        "subtotal": to_money(raw.get("subtotal", 0)),
        "tax": to_money(raw.get("tax", 0)),
        "total": to_money(raw.get("total", 0)),
        "tax_rate": to_money(raw.get("tax_rate", 0)),
        "taxfree": bool(raw.get("taxfree", False)),
        "taxation_type": str(raw.get("taxation_type") or ""),
        "created_at_upstream": parse_datetime(raw.get("created_at")),
        "due_date": parse_datetime(raw.get("due_date")),
        "payment_date": parse_datetime(raw.get("payment_date")),
        "refund_date": parse_datetime(raw.get("refund_date")),
        "user_id": _int(user["id"]) if user.get("id") not in (None, "") else None,
        "full_name": str(user.get("full_name") or "")[:200],
        "company_name": str(user.get("company_name") or "")[:200],
        "items": [parse_item(i) for i in items] if isinstance(items, list) else None,
    }


def parse_invoice_page(raw: Any) -> dict[str, Any]:
    # GetInvoices' shape is undocumented; the sandbox's (wisecp.md §10.11) is what we read.
    if not isinstance(raw, Mapping) or not isinstance(raw.get("invoices"), list):
        raise ParseError("GetInvoices data has no invoices list")
    return {
        "invoices": [parse_invoice(i) for i in raw["invoices"]],
        "total": _int(raw.get("total") or 0),
        "page": _int(raw.get("page") or 1),
        "limit": _int(raw.get("limit") or PAGE_LIMIT),
    }


def to_wire(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Item fields as UpdateInvoiceItem takes them (wisecp.md §5.1)."""
    body: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "due_date":
            value = value if isinstance(value, str) else format_datetime(value)
        elif name in MONEY_FIELDS:
            # JSON numbers ("Double"); the value has at most 2 places, which a double keeps.
            money = to_money(value)
            value = int(money) if money == money.to_integral_value() else float(money)
        body[name] = value
    return body


def changes_applied(item: Mapping[str, Any], changes: Mapping[str, Any]) -> bool:
    """Does a parsed item already hold every field of a (wire-form) change?"""
    for name, wanted in to_wire(changes).items():
        have = item.get(name)
        if name == "due_date":
            if format_datetime(have) != wanted:
                return False
        elif name in MONEY_FIELDS:
            if to_money(have) != to_money(wanted):
                return False
        elif have != wanted:
            return False
    return True


# WiseCP answers in English (wisecp.md §7): the messages we know are shown in the reader's
# language; the call log keeps them as WiseCP sent them.
KNOWN_MESSAGES = {
    "Invalid API key": gettext_lazy("the API key is not valid."),
    "IP address not allowed": gettext_lazy("our IP address is not allowed."),
    "Invoice not found": gettext_lazy("the invoice was not found."),
    "Invoice item not found": gettext_lazy("the invoice item was not found."),
    "Invoices could not be listed": gettext_lazy("the invoices could not be listed."),
    "Invoice could not be read": gettext_lazy("the invoice could not be read."),
    "Invoice item could not be updated": gettext_lazy("the invoice item could not be updated."),
}


def readable_message(message: str) -> Any:
    """WiseCP's message in the reader's language when we know it (a lazy text, kept by its id
    in a job's message), else as sent; a sentence."""
    known = KNOWN_MESSAGES.get(message.strip().rstrip("."))
    if known is not None:
        return known
    if message.startswith("No permission for "):
        return text(
            gettext_noop("our API key has no permission for %(action)s."),
            action=message.removeprefix("No permission for ").rstrip("."),
        )
    return sentence(message)


class WiseCPClient(UpstreamClient):
    service = "wisecp"
    service_label = "WiseCP"
    base_url_setting = "WISECP_API_URL"
    concurrency_setting = "WISECP_CONCURRENCY"
    operations = ("GetInvoices", "GetInvoice", "UpdateInvoiceItem")
    rate_limit_setting = "WISECP_RATE_LIMIT"

    def __init__(self, *, api_key: str | None = None, **kwargs: Any) -> None:
        self.api_key = api_key or settings.WISECP_API_KEY
        super().__init__(**kwargs)

    def auth_headers(self) -> dict[str, str]:
        # wisecp.md §1: the key in `Apikey`, and JSON on every request (GETs included).
        return {"Apikey": self.api_key, "Content-Type": "application/json"}

    def url_for(self, path: str) -> str:
        # API_URL ends with "/" and the docs append `Group/Action[/ID]` to it (wisecp.md §1).
        base = self.base_url if self.base_url.endswith("/") else self.base_url + "/"
        return base + path.lstrip("/")

    def interpret(self, exchange: Exchange, status: int, body: Any) -> None:
        """Judge by the envelope's `status`, not by the HTTP code (wisecp.md §2).

        On success exchange.data becomes the parsed `data` of the answer.
        """
        if not isinstance(body, dict):
            if status >= 400:
                self.raise_for_status(exchange, status, "")
            raise UpstreamResponseError(
                _("WiseCP answered with an unexpected body (HTTP %(status)s).")
                % {"status": status},
                exchange=exchange,
            )
        outcome = body.get("status")
        # WiseCP has no error codes: "error" is its envelope's status (the outcome says as much),
        # not a code to show staff.
        exchange.upstream_code = ""
        exchange.upstream_message = str(body.get("message") or "")
        if status >= 300:
            self.raise_for_status(exchange, status, exchange.upstream_message)
            raise UpstreamResponseError(
                _("WiseCP answered HTTP %(status)s.") % {"status": status}, exchange=exchange
            )
        if outcome == "error":
            raise UpstreamRejectedError(
                text(
                    gettext_noop("WiseCP refused: %(message)s"),
                    message=readable_message(exchange.upstream_message)
                    or gettext_lazy("no message."),
                ),
                exchange=exchange,
            )
        if outcome != "successful":
            raise UpstreamResponseError(
                _("WiseCP answered without a status (HTTP %(status)s).") % {"status": status},
                exchange=exchange,
            )
        parse = _PARSERS.get(exchange.operation)
        if parse is None:
            exchange.data = body.get("data")
            return
        try:
            exchange.data = parse(body.get("data"))
        except (ParseError, KeyError, TypeError, ValueError) as error:
            raise UpstreamResponseError(
                _("WiseCP answered %(operation)s with data we cannot read: %(error)s")
                % {"operation": exchange.operation, "error": error},
                exchange=exchange,
            ) from None

    # Reads ---------------------------------------------------------------------------------

    def get_invoices(
        self, *, page: int = 1, limit: int = PAGE_LIMIT, filters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """One page of invoices (without items), oldest id first so paging is stable."""
        params: dict[str, Any] = {"page": page, "limit": limit, "sort": "id", "sort_type": "ASC"}
        for name, value in (filters or {}).items():
            if isinstance(value, datetime | date):
                value = format_datetime(value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            params[f"filter[{name}]"] = value
        return self.request(
            "GetInvoices",
            "GET",
            "Billing/GetInvoices",
            params=params,
            idempotent=True,
            mutating=False,
        ).data

    def get_invoice(self, invoice_id: int) -> dict[str, Any]:
        """One invoice with its `items`."""
        return self.request(
            "GetInvoice",
            "GET",
            f"Billing/GetInvoice/{int(invoice_id)}",
            idempotent=True,
            mutating=False,
        ).data

    def iter_invoices(self, *, filters: Mapping[str, Any] | None = None) -> Iterator[dict]:
        page = 1
        while True:
            data = self.get_invoices(page=page, filters=filters)
            yield from data["invoices"]
            if not data["invoices"] or page * data["limit"] >= data["total"]:
                return
            page += 1

    # Writes --------------------------------------------------------------------------------

    def update_invoice_item(self, item_id: int, changes: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the given fields only (a partial update, wisecp.md §5.1); `owner_id` moves it.

        Sending the same fields again leaves the item as it is, so a resend is harmless.
        """
        return self.request(
            "UpdateInvoiceItem",
            "PUT",
            f"Billing/UpdateInvoiceItem/{int(item_id)}",
            json_body=to_wire(changes),
            idempotent=True,
            mutating=True,
        ).data


_PARSERS = {
    "GetInvoices": parse_invoice_page,
    "GetInvoice": parse_invoice,
    "UpdateInvoiceItem": parse_item,
}
