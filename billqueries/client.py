"""Payofin's bill-payment API (shared/upstreams/payofin.md). One method per operation; no ORM."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

from upstream.calls.client import Exchange, UpstreamClient
from upstream.calls.errors import UpstreamAuthError, UpstreamRejectedError, UpstreamResponseError
from upstream.calls.parsing import ParseError, json_money, parse_local

logger = logging.getLogger(__name__)

MAX_QUERIES = 15  # per multiple query (payofin.md §4)
MAX_FIRM_REF_LEN = 15  # firmRefNo (payofin.md §4)
CODE_OK = 1
CODE_NO_DEBT = -1
CODE_BAD_CREDENTIALS = -22

FOUND, NO_DEBT, FAILED = "found", "no_debt", "failed"


@dataclass(frozen=True)
class BillQuery:
    soot_code: int
    subscriber_no: str
    additional_no: str
    firm_ref_no: str


@dataclass(frozen=True)
class Bill:
    invoice_query_id: int
    subscriber_no: str
    customer_name: str
    invoice_no: str
    exp_date: date | None
    invoice_amount: Decimal
    merchant_profit: Decimal
    total_amount: Decimal
    soot_code: int | None


@dataclass(frozen=True)
class QueryResult:
    """Payofin's answer for one query, or why there is none (`error`)."""

    result: bool | None
    code: int | None
    message: str
    bills: tuple[Bill, ...] = ()
    error: str = ""

    @property
    def outcome(self) -> str:
        if self.error:
            return FAILED
        if self.code == CODE_NO_DEBT:
            return NO_DEBT
        succeeded = self.result if self.result is not None else self.code == CODE_OK
        if not succeeded:
            return FAILED
        return FOUND if self.bills else NO_DEBT

    @property
    def failure(self) -> str:
        """The text staff read for a failed query."""
        if self.error:
            return self.error
        return self.message or _("Payofin gave no reason (code %(code)s).") % {"code": self.code}


@dataclass(frozen=True)
class InstitutionInfo:
    soot_code: int
    name: str
    invoice_type: str
    description: str
    field_title: str
    field_description: str
    mask: str
    subscriber_required: bool
    additional_no_required: bool
    partial_amount: bool


class UnreadableEntry(ParseError):
    """One element of the answer is not what payofin.md §4 describes."""


def ci_get(data: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    """A key in any casing: Payofin's tables say `Result`, its samples `result` (§6.2)."""
    lowered = {str(k).lower(): v for k, v in data.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return default


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, int):
        return bool(value)
    return None


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def to_decimal(value: Any) -> Decimal:
    """An amount in lira, the digits Payofin sent (payofin.md §4)."""
    try:
        return json_money(value)
    except ParseError as error:
        raise UnreadableEntry(str(error)) from None


def parse_exp_date(value: Any) -> date | None:
    """`expDate` is dd.MM.yyyy (§3), unlike the yyyy-mm-dd of requests."""
    if value in (None, ""):
        return None
    try:
        return parse_local(str(value).strip()[:10], ("%d.%m.%Y", "%Y-%m-%d")).date()
    except ParseError:
        raise UnreadableEntry(f"expDate {value!r} is not dd.MM.yyyy") from None


def parse_bill(data: Any) -> Bill:
    if not isinstance(data, Mapping):
        raise UnreadableEntry("a bill is not an object")
    query_id = _as_int(ci_get(data, "invoiceQueryId"))
    if query_id is None:
        raise UnreadableEntry("a bill has no invoiceQueryId")
    amount = to_decimal(ci_get(data, "invoiceAmount"))
    profit_raw = ci_get(data, "merchantProfit")
    profit = to_decimal(profit_raw) if profit_raw is not None else Decimal("0.00")
    total_raw = ci_get(data, "totalAmount")
    total = to_decimal(total_raw) if total_raw is not None else amount + profit
    return Bill(
        invoice_query_id=query_id,
        subscriber_no=str(ci_get(data, "subscriberNo", default="") or ""),
        customer_name=str(ci_get(data, "customerName", default="") or ""),
        invoice_no=str(ci_get(data, "invoiceNo", default="") or ""),
        exp_date=parse_exp_date(ci_get(data, "expDate")),
        invoice_amount=amount,
        merchant_profit=profit,
        total_amount=total,
        soot_code=_as_int(ci_get(data, "sootCode")),
    )


def parse_query_result(entry: Any) -> QueryResult:
    """One element of a multiple query's answer (or a whole single-query answer)."""
    if not isinstance(entry, Mapping):
        return QueryResult(
            None, None, "", error=_("Payofin's answer for this query is unreadable.")
        )
    result = _as_bool(ci_get(entry, "result"))
    code = _as_int(ci_get(entry, "resultCode"))
    message = str(ci_get(entry, "resultMessage", default="") or "")
    raw_bills = ci_get(entry, "invoiceList", default=None) or []
    try:
        if not isinstance(raw_bills, list):
            raise UnreadableEntry("invoiceList is not a list")
        bills = tuple(parse_bill(b) for b in raw_bills)
    except UnreadableEntry as error:
        return QueryResult(
            result,
            code,
            message,
            error=_("Payofin's bills for this query are unreadable (%(error)s).")
            % {"error": error},
        )
    if result is None and code is None:
        return QueryResult(
            None, None, message, error=_("Payofin's answer for this query has no result code.")
        )
    return QueryResult(result, code, message, bills)


def _same_subscriber(a: str, b: str) -> bool:
    # Payofin may drop leading zeros; anything else is somebody else's bill.
    return a.strip().lstrip("0") == b.strip().lstrip("0")


def match_by_position(queries: Sequence[BillQuery], entries: list[Any]) -> list[QueryResult]:
    """Results to queries by position: failed entries carry nothing that identifies their
    query (§4, §6.3). An answer that is missing or belongs to another subscriber is a failure of
    that line, never a guess."""
    results = []
    for i, query in enumerate(queries):
        if i >= len(entries):
            results.append(
                QueryResult(
                    None,
                    None,
                    "",
                    error=_(
                        "Payofin answered %(got)s results for %(sent)s queries; this one (number "
                        "%(position)s of the request) got no answer. Run it again."
                    )
                    % {"got": len(entries), "sent": len(queries), "position": i + 1},
                )
            )
            continue
        result = parse_query_result(entries[i])
        for bill in result.bills:
            other_soot = bill.soot_code is not None and bill.soot_code != query.soot_code
            other_sub = bill.subscriber_no and not _same_subscriber(
                bill.subscriber_no, query.subscriber_no
            )
            if other_soot or other_sub:
                result = QueryResult(
                    result.result,
                    result.code,
                    result.message,
                    error=_(
                        "Payofin's answer in this position is for %(soot)s/%(subscriber)s, not "
                        "this query; it was not used. Run it again."
                    )
                    % {"soot": bill.soot_code, "subscriber": bill.subscriber_no},
                )
                break
        results.append(result)
    return results


def parse_institution(data: Any) -> InstitutionInfo:
    if not isinstance(data, Mapping):
        raise UnreadableEntry("an institution is not an object")
    code = _as_int(ci_get(data, "sootCode"))
    if code is None:
        raise UnreadableEntry("an institution has no sootCode")
    fields = ci_get(data, "fields", default=None) or {}
    # `fields` is one object in the sandbox; the docs leave open whether it is a list (§8).
    if isinstance(fields, list):
        fields = fields[0] if fields and isinstance(fields[0], Mapping) else {}
    if not isinstance(fields, Mapping):
        fields = {}
    required = _as_bool(ci_get(fields, "required"))
    return InstitutionInfo(
        soot_code=code,
        name=str(ci_get(data, "sootName", default="") or "").strip()[:200],
        invoice_type=str(ci_get(data, "invoiceType", default="") or "").strip()[:100],
        description=str(ci_get(data, "description", default="") or ""),
        field_title=str(ci_get(fields, "title", default="") or "").strip()[:100],
        field_description=str(ci_get(fields, "description", default="") or ""),
        mask=str(ci_get(fields, "mask", default="") or "").strip()[:100],
        subscriber_required=True if required is None else required,
        additional_no_required=bool(_as_bool(ci_get(fields, "additionalNoRequired"))),
        partial_amount=bool(_as_bool(ci_get(fields, "partialAmount"))),
    )


class PayofinClient(UpstreamClient):
    service = "payofin"
    service_label = "Payofin"
    base_url_setting = "PAYOFIN_BASE_URL"
    concurrency_setting = "PAYOFIN_CONCURRENCY"
    operations = ("sootlist", "multipleinvoicequery")
    rate_limit_setting = "PAYOFIN_RATE_LIMIT"

    def __init__(
        self, *, api_key: str | None = None, secret_key: str | None = None, **kwargs: Any
    ) -> None:
        self.api_key = api_key or settings.PAYOFIN_API_KEY
        self.secret_key = secret_key or settings.PAYOFIN_SECRET_KEY
        super().__init__(**kwargs)

    def auth_headers(self) -> dict[str, str]:
        # Both on every request (payofin.md §1); calls.redaction masks them in the call log.
        return {"ApiKey": self.api_key, "SecretKey": self.secret_key}

    def interpret(self, exchange: Exchange, status: int, body: Any) -> None:
        envelope = body if isinstance(body, Mapping) else {}
        result = _as_bool(ci_get(envelope, "result"))
        code = _as_int(ci_get(envelope, "resultCode"))
        message = str(ci_get(envelope, "resultMessage", default="") or "")
        exchange.upstream_code = "" if code is None else str(code)
        exchange.upstream_message = message
        if code == CODE_BAD_CREDENTIALS:
            # HTTP 200 by default, 401 when switched (§9 assumption 2): fix the configuration.
            raise UpstreamAuthError(
                _("Payofin refused our credentials: %(message)s (code %(code)s).")
                % {"message": message.rstrip(". ") or _("no message"), "code": code},
                exchange=exchange,
            )
        if status != 200:
            # 400/-900 for a malformed request (rejected), 5xx/429 (failed, retried).
            self.raise_for_status(exchange, status, message)
            raise UpstreamResponseError(
                _("Payofin answered HTTP %(status)s.") % {"status": status}, exchange=exchange
            )
        if not isinstance(body, Mapping):
            raise UpstreamResponseError(
                _("Payofin answered with an unexpected body (HTTP %(status)s).")
                % {"status": status},
                exchange=exchange,
            )
        failed = result is False or (code is not None and code != CODE_OK)
        if not failed:
            self._check_shape(exchange, body)
            return
        raise UpstreamRejectedError(
            _("Payofin refused the request: %(message)s (code %(code)s).")
            % {"message": message.rstrip(". ") or _("no message"), "code": code},
            exchange=exchange,
        )

    def _check_shape(self, exchange: Exchange, body: Mapping[str, Any]) -> None:
        """A 200 without the list we asked for is an answer we cannot use (retried, then failed)."""
        if exchange.operation == "multipleinvoicequery":
            # The sample names the list `invoices`, the table `invoiceQueryList` (§6.1).
            entries = ci_get(body, "invoices", "invoiceQueryList")
            if not isinstance(entries, list):
                raise UpstreamResponseError(
                    _("Payofin answered without a list of results."), exchange=exchange
                )
            # No top-level code exists for this answer (§4): the log shows the entries' codes.
            exchange.upstream_message = _summary(entries)
        elif exchange.operation == "sootlist" and not isinstance(ci_get(body, "sootList"), list):
            raise UpstreamResponseError(
                _("Payofin answered without an institution list."), exchange=exchange
            )

    def _request(self, operation: str, method: str, body: Any = None) -> Exchange:
        # Every operation here only reads: resending is harmless, nothing is ever in doubt.
        return self.request(
            operation,
            method,
            f"/invoices/{operation}",
            json_body=body,
            idempotent=True,
            mutating=False,
        )

    # Bill queries --------------------------------------------------------------------------

    def multiple_invoice_query(self, queries: Sequence[BillQuery]) -> list[QueryResult]:
        """Query up to 15 subscribers; one result per query, in the order of `queries`."""
        if not queries:
            raise ValueError("multipleinvoicequery needs at least one query")
        if len(queries) > MAX_QUERIES:
            raise ValueError(
                f"multipleinvoicequery takes at most {MAX_QUERIES} queries, got {len(queries)}"
            )
        for q in queries:
            if not q.firm_ref_no or len(q.firm_ref_no) > MAX_FIRM_REF_LEN:
                raise ValueError(f"firmRefNo {q.firm_ref_no!r}: 1 to {MAX_FIRM_REF_LEN} characters")
        body = {
            "invoiceQueryList": [
                {
                    # A string here, an integer everywhere else (§6.5).
                    "sootCode": str(q.soot_code),
                    "subscriberNo": q.subscriber_no,
                    "additionalNo": q.additional_no or "",
                    "firmRefNo": q.firm_ref_no,
                }
                for q in queries
            ]
        }
        exchange = self._request("multipleinvoicequery", "POST", body)
        entries = ci_get(exchange.data, "invoices", "invoiceQueryList")
        if len(entries) != len(queries):
            logger.warning(
                "payofin multipleinvoicequery call %s: %s results for %s queries",
                exchange.call_id,
                len(entries),
                len(queries),
            )
        return match_by_position(queries, entries)

    # Catalogue -----------------------------------------------------------------------------

    def sootlist(self) -> list[InstitutionInfo]:
        exchange = self._request("sootlist", "GET")
        try:
            return [parse_institution(row) for row in ci_get(exchange.data, "sootList")]
        except UnreadableEntry as error:
            raise UpstreamResponseError(
                _("Payofin's institution list is unreadable (%(error)s).") % {"error": error},
                exchange=exchange,
            ) from None


def _summary(entries: list[Any]) -> str:
    """E.g. "15 results; codes 1×9, -1×5, -6×1"."""
    counts: dict[str, int] = {}
    for entry in entries:
        code = _as_int(ci_get(entry, "resultCode")) if isinstance(entry, Mapping) else None
        key = "?" if code is None else str(code)
        counts[key] = counts.get(key, 0) + 1
    codes = ", ".join(f"{code}×{n}" for code, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return _("%(count)s results; codes %(codes)s") % {"count": len(entries), "codes": codes}
