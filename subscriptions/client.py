"""Paynet's recurring-payment API (shared/upstreams/paynet.md). One method per operation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from upstream.calls.client import Exchange, UpstreamClient
from upstream.calls.errors import UpstreamAuthError, UpstreamRejectedError, UpstreamResponseError
from upstream.calls.parsing import format_local, json_decimal, json_money, parse_local
from upstream.l10n.stored import text

DATETIME_FORMAT = "%d.%m.%Y %H:%M:%S"  # dd.MM.yyyy HH:mm:ss (paynet.md §4)
DATE_FORMAT = "%d.%m.%Y"
# invoice_list pages hold at most 100 rows (paynet.md §10, assumption 14).
PAGE_LIMIT = 100
CODE_OK = 0
# Operations whose answer must hold the record array (paynet.md §6).
LIST_OPERATIONS = frozenset({"list", "invoice_list"})
CODE_UNAUTHORIZED = 7


def to_kurus(amount: Decimal) -> int:
    """Lira to integer kuruş: create/update services take amounts ×100 (paynet.md §4)."""
    kurus = amount * 100
    if kurus != kurus.to_integral_value():
        raise ValueError(f"{amount} has more than two decimals")
    return int(kurus)


def from_kurus(value: Any) -> Decimal:
    return json_money(json_decimal(value) / 100)


def format_datetime(value: datetime) -> str:
    return format_local(value, DATETIME_FORMAT)


def parse_datetime(value: str | None) -> datetime | None:
    return parse_local(value, (DATETIME_FORMAT, DATE_FORMAT)) if value else None


def records_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    # Paynet names the array `data` in some services and `Data` in others (paynet.md §6.3).
    records = body.get("data", body.get("Data"))
    return records if isinstance(records, list) else []


class PaynetClient(UpstreamClient):
    service = "paynet"
    service_label = "Paynet"
    base_url_setting = "PAYNET_BASE_URL"
    concurrency_setting = "PAYNET_CONCURRENCY"
    operations = (
        "invoice_status_update",
        "invoices_status_update_all",
        "create_invoice",
        "list",
        "subscription_detail",
        "invoice_list",
    )
    rate_limit_setting = "PAYNET_RATE_LIMIT"

    def __init__(self, *, secret_key: str | None = None, **kwargs: Any) -> None:
        self.secret_key = secret_key or settings.PAYNET_SECRET_KEY
        super().__init__(**kwargs)

    def auth_headers(self) -> dict[str, str]:
        # The raw secret key after "Basic", not base64(user:password) (paynet.md §1).
        return {"Authorization": f"Basic {self.secret_key}"}

    def interpret(self, exchange: Exchange, status: int, body: Any) -> None:
        if not isinstance(body, dict):
            # A 401/404 from a proxy may come with no error object: the status still decides.
            self.raise_for_status(exchange, status, "")
            raise UpstreamResponseError(
                _("Paynet answered with an unexpected body (HTTP %(status)s).")
                % {"status": status},
                exchange=exchange,
            )
        exchange.upstream_message = str(body.get("message") or "")
        if status != 200:
            # Error object: type, message, code (= HTTP status), result_code (paynet.md §2).
            exchange.upstream_code = str(body.get("result_code", body.get("code", "")))
            self.raise_for_status(exchange, status, exchange.upstream_message)
            raise UpstreamResponseError(
                _("Paynet answered HTTP %(status)s.") % {"status": status}, exchange=exchange
            )
        try:
            code = int(body.get("code"))
        except (TypeError, ValueError):
            raise UpstreamResponseError(
                _("Paynet answered without a result code."), exchange=exchange
            ) from None
        exchange.upstream_code = str(code)
        if code == CODE_OK:
            if exchange.operation in LIST_OPERATIONS and not isinstance(
                body.get("data", body.get("Data")), list
            ):
                # "code 0" without a list says nothing about the records: never read it as
                # "none there", or a read-back would call an applied write lost.
                raise UpstreamResponseError(
                    _("Paynet answered without the list of records."), exchange=exchange
                )
            return
        # Business failures arrive as HTTP 200 with code != 0 (paynet.md §2).
        message = text(
            gettext_noop("Paynet refused: %(message)s (code %(code)s)."),
            message=exchange.upstream_message.rstrip(". ") or gettext_lazy("no message"),
            code=code,
        )
        if code == CODE_UNAUTHORIZED:
            raise UpstreamAuthError(message, exchange=exchange)
        raise UpstreamRejectedError(message, exchange=exchange)

    def _post(
        self, operation: str, body: dict[str, Any], *, idempotent: bool, mutating: bool
    ) -> Exchange:
        return self.request(
            operation,
            "POST",
            f"/v1/subscription/{operation}",
            json_body=body,
            idempotent=idempotent,
            mutating=mutating,
        )

    # Writes ------------------------------------------------------------------------------------

    def invoice_status_update(
        self, *, status: int, invoice_id: str = "", invoice_no: str = ""
    ) -> dict[str, Any]:
        # Setting a status a record already has is a no-op, so a resend is harmless.
        return self._post(
            "invoice_status_update",
            {"invoice_id": invoice_id, "invoice_no": invoice_no, "status": int(status)},
            idempotent=True,
            mutating=True,
        ).data

    def invoices_status_update_all(
        self, *, status: int, subscription_id: str = "", reference_no: str = ""
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"status": int(status)}
        if subscription_id:
            body["subscription_id"] = subscription_id
        else:
            body["reference_no"] = reference_no
        return self._post("invoices_status_update_all", body, idempotent=True, mutating=True).data

    def create_invoice(
        self,
        *,
        val_date: datetime,
        amount: Decimal,
        subscription_id: str = "",
        reference_no: str = "",
        agent_amount: Decimal | None = None,
        company_amount: Decimal | None = None,
        invoice_no: str = "",
        currency: str = "TRY",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "val_date": format_datetime(val_date),
            "amount": to_kurus(amount),
            "currency": currency,
        }
        if subscription_id:
            body["subscription_id"] = subscription_id
        else:
            body["reference_no"] = reference_no
        if agent_amount is not None:
            body["agent_amount"] = to_kurus(agent_amount)
        if company_amount is not None:
            body["company_amount"] = to_kurus(company_amount)
        if invoice_no:
            body["invoice_no"] = invoice_no
        # No idempotency key exists: a create that got no answer is read back, never resent.
        return self._post("create_invoice", body, idempotent=False, mutating=True).data

    # Reads -------------------------------------------------------------------------------------

    def subscription_list(
        self, *, datab: date, datbi: date, starting_after: int = 0, limit: int = PAGE_LIMIT
    ) -> dict[str, Any]:
        return self._post(
            "list",
            {
                "datab": datab.strftime(DATE_FORMAT),
                "datbi": datbi.strftime(DATE_FORMAT),
                "limit": limit,
                "starting_after": starting_after,
            },
            idempotent=True,
            mutating=False,
        ).data

    def subscription_detail(
        self, *, subscription_id: str = "", reference_no: str = ""
    ) -> dict[str, Any]:
        body = (
            {"subscription_id": subscription_id}
            if subscription_id
            else {"reference_no": reference_no}
        )
        return self._post("subscription_detail", body, idempotent=True, mutating=False).data

    def invoice_list(
        self,
        *,
        subscription_id: str = "",
        reference_no: str = "",
        starting_after: int = 0,
        limit: int = PAGE_LIMIT,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"limit": limit, "starting_after": starting_after}
        if subscription_id:
            body["subscription_id"] = subscription_id
        else:
            body["reference_no"] = reference_no
        return self._post("invoice_list", body, idempotent=True, mutating=False).data

    # Paging helpers ----------------------------------------------------------------------------

    def iter_subscriptions(self, *, datab: date, datbi: date) -> Iterator[dict[str, Any]]:
        yield from self._pages(
            lambda offset: self.subscription_list(datab=datab, datbi=datbi, starting_after=offset)
        )

    def iter_invoices(self, *, subscription_id: str) -> Iterator[dict[str, Any]]:
        yield from self._pages(
            lambda offset: self.invoice_list(subscription_id=subscription_id, starting_after=offset)
        )

    def invoice_status(self, *, subscription_id: str, invoice_id: str) -> int | None:
        """A record's status as Paynet lists it now (None if not listed): the read-back of
        an update that may have been applied without an answer."""
        for row in self.iter_invoices(subscription_id=subscription_id):
            if str(row.get("invoice_id")) == str(invoice_id):
                return int(row["status"])
        return None

    def _pages(self, fetch: Any) -> Iterator[dict[str, Any]]:
        # Paging is by row index, not by id (paynet.md §6.1, §10 assumption 15).
        offset = 0
        while True:
            body = fetch(offset)
            rows = records_of(body)
            yield from rows
            if not body.get("has_more") or not rows:
                return
            offset += len(rows)
