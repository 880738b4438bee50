"""Simulated Paynet recurring-payments API (shared/upstreams/paynet.md).

Serves `/paynet/v1/subscription/<operation>` with the documented envelopes and quirks; every gap
in the docs is filled exactly as paynet.md §10 states (cited below as "A<n>").
"""

from __future__ import annotations

import base64
import calendar
import hmac
import os
import random
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from .core import ISTANBUL, BadRequestBody, Ledger, Request, Response, Service

DATETIME_FORMAT = "%d.%m.%Y %H:%M:%S"
DATE_FORMAT = "%d.%m.%Y"
PATH_PREFIX = "/v1/subscription/"

SUCCESS_MESSAGE = "Başarılı Islem"  # A18: the samples' spelling, dotless I
STATUSES = (0, 2, 3, 4, 5, 6)  # §3: there is no 1
RETURN_CODES = frozenset({*range(1, 22), 100})  # §2 "Dönüş Kodları" without 0
DEFAULT_LIMIT = 10  # §6.3
MAX_LIMIT = 100  # A14

# A18: object_name exactly as the samples, typo included; subscription_detail has no sample.
OBJECT_NAMES = {
    "create_invoice": "subscription_invoice",
    "invoice_status_update": "subscription_invoice_status_update",
    "invoices_status_update_all": "subscription_invoices_status_update_all",
    "list": "subscription_list",
    "subscription_detail": "subscription_detail",
    "invoice_list": "subscription_invoice_list",
    "invoice_attempt_list": "subcription_invoice_attempt_list",
}

FIRST_NAMES = (
    "Ayşe", "Mehmet", "Fatma", "Mustafa", "Emine", "Ahmet", "Hatice", "Ali", "Zeynep", "Hüseyin",
    "Elif", "Hasan", "Şule", "İbrahim", "Özlem", "Murat", "Gülşen", "Çağrı", "Ömer", "Büşra",
    "Yağmur", "Oğuz", "İrem", "Tuğba", "Gökhan", "Derya", "Serkan", "Şükrü", "Ümit", "Nazlı",
)  # fmt: skip
SURNAMES = (
    "Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Yıldız", "Yıldırım", "Öztürk", "Aydın",
    "Özdemir", "Arslan", "Doğan", "Kılıç", "Aslan", "Çetin", "Kara", "Koç", "Kurt", "Özkan",
    "Şimşek", "Polat", "Erdoğan", "Güneş", "Aktaş", "Türkoğlu", "Işık", "Uğurlu", "Gümüş",
)  # fmt: skip
FIXED_DESCRIPTIONS = (
    "Aylık internet aboneliği", "Spor salonu üyeliği", "Bulut sunucu kiralama",
    "Dergi aboneliği", "Kasko taksiti", "Özel ders paketi", "Yazılım lisansı",
)  # fmt: skip
VARIABLE_DESCRIPTIONS = (
    "Elektrik faturası", "Doğalgaz faturası", "Su faturası", "Mobil hat faturası",
    "Site aidatı", "Kullanım bazlı hosting bedeli",
)  # fmt: skip
FIXED_PRICES = (4990, 7990, 9990, 14990, 19990, 24900, 29990, 39900, 49900, 79900, 119900)
AGENT_IDS = ("1024", "1187", "2045", "3310", "4402", "5178")
USER_NAMES = ("entegrasyon", "muhasebe", "operasyon")
BANK_ERRORS = (
    "Yetersiz bakiye",
    "Kart limiti yetersiz",
    "İşlem onaylanmadı",
    "Kartın kullanım süresi dolmuş",
    "Kart sahibi işleme kapalı",
)
ATTEMPT_FAILURES = {
    3: {0: 75, 1: 15, 2: 10},
    4: {1: 50, 2: 30, 3: 20},
    2: {0: 60, 1: 40},
    5: {0: 70, 1: 30},
    6: {0: 70, 1: 30},
}
ASCII_FOLD = str.maketrans("çğıöşüÇĞİÖŞÜ", "cgiosuCGIOSU")


@dataclass(slots=True)
class Invoice:
    """One payment record ("ödeme kaydı")."""

    invoice_id: int
    invoice_no: str
    subscription: Subscription
    amount: int
    agent_amount: int
    company_amount: int
    val_date: datetime
    status: int
    currency: str = "TRY"
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        # A14: the record fields; amounts as integer kuruş (A10), dates dd.MM.yyyy HH:mm:ss (A12).
        return {
            "invoice_id": self.invoice_id,
            "invoice_no": self.invoice_no,
            "subscription_id": self.subscription.subscription_id,
            "reference_no": self.subscription.reference_no,
            "amount": self.amount,
            "agent_amount": self.agent_amount,
            "company_amount": self.company_amount,
            "currency": self.currency,
            "val_date": self.val_date.strftime(DATETIME_FORMAT),
            "status": self.status,
        }


@dataclass(slots=True)
class Subscription:
    """One recurring-payment order ("düzenli ödeme")."""

    subscription_id: str
    reference_no: str
    name_surname: str
    is_fixed_price: bool
    amount: int
    agent_amount: int
    company_amount: int
    interval: int
    interval_count: int
    period: str
    begin_date: datetime
    created_date: datetime
    end_user_email: str
    end_user_gsm: str
    end_user_desc: str
    agent_id: str
    user_name: str
    status: int = 0
    addcomission_to_amount: bool = False
    group_reference_no: str = ""
    currency: str = "TRY"
    invoices: list[Invoice] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        # A17: the §6.2 fields plus subscription_id, is_fixed_price, status, created_date.
        return {
            "subscription_id": self.subscription_id,
            "reference_no": self.reference_no,
            "name_surname": self.name_surname,
            "is_fixed_price": self.is_fixed_price,
            "amount": self.amount,
            "agent_amount": self.agent_amount,
            "company_amount": self.company_amount,
            "interval": self.interval,
            "interval_count": self.interval_count,
            "period": self.period,
            "begin_date": self.begin_date.strftime(DATETIME_FORMAT),
            "end_user_email": self.end_user_email,
            "end_user_gsm": self.end_user_gsm,
            "end_user_desc": self.end_user_desc,
            "agent_id": self.agent_id,
            "addcomission_to_amount": self.addcomission_to_amount,
            "currency": self.currency,
            "user_name": self.user_name,
            "group_reference_no": self.group_reference_no,
            "status": self.status,
            "created_date": self.created_date.strftime(DATETIME_FORMAT),
        }


class _Fail(Exception):
    """Stop handling and answer with this response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _error(status: int, type_: str, message: str, result_code: int) -> _Fail:
    # §2: every non-200 answer is the error object.
    return _Fail(
        Response.json(
            status, {"type": type_, "message": message, "code": status, "result_code": result_code}
        )
    )


def _bad(message: str) -> _Fail:
    return _error(400, "invalid_request_error", message, 11)  # A3


def _not_found(message: str) -> _Fail:
    return _error(404, "no_data_error", message, 12)  # A4


def _add_months(moment: datetime, months: int) -> datetime:
    month0 = moment.month - 1 + months
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _step(moment: datetime, interval: int, n: int) -> datetime:
    """The n-th charge date after `moment` for interval 0 daily, 1 weekly, 2 monthly, 3 yearly."""
    if interval == 0:
        return moment + timedelta(days=n)
    if interval == 1:
        return moment + timedelta(weeks=n)
    if interval == 2:
        return _add_months(moment, n)
    return _add_months(moment, 12 * n)


def _weighted(rng: random.Random, weights: Mapping[int, int]) -> int:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


class PaynetService(Service):
    name = "paynet"
    prefix = "/paynet"

    # A6, configurable: statuses the API may set, and statuses a record never leaves.
    settable_statuses: frozenset[int] = frozenset({0, 2, 4, 5, 6})
    final_statuses: frozenset[int] = frozenset({3, 6})

    def __init__(
        self,
        *,
        seed: int,
        ledger: Ledger,
        secret_key: str | None = None,
        allow_base64_auth: bool = False,
        allowed_ips: Iterable[str] | None = None,
        today: date | None = None,
        subscriptions: int = 40,
    ) -> None:
        self.secret_key = secret_key or os.environ.get(
            "PAYNET_SECRET_KEY", "sck_sandbox_paynet_secret"
        )
        # §1 quirk: the raw key is the contract; base64(secret:) only for compatibility tests.
        self.allow_base64_auth = allow_base64_auth
        self.allowed_ips = frozenset(allowed_ips) if allowed_ips is not None else None  # A19
        # Seed dates hang off a day (Istanbul time); pin it for data that never moves.
        self.day = today
        self.seed_subscriptions = subscriptions
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "create_invoice": self._create_invoice,
            "invoice_status_update": self._invoice_status_update,
            "invoices_status_update_all": self._invoices_status_update_all,
            "list": self._list,
            "subscription_detail": self._subscription_detail,
            "invoice_list": self._invoice_list,
            "invoice_attempt_list": self._invoice_attempt_list,
        }
        super().__init__(seed=seed, ledger=ledger)

    # --- state ---------------------------------------------------------------------------

    def reset(self, seed: int) -> None:
        rng = random.Random(seed)
        today = self.day or datetime.now(ISTANBUL).date()
        self._now = datetime(today.year, today.month, today.day, 9, 0, 0)
        self._subs: dict[str, Subscription] = {}
        self._subs_by_ref: dict[str, Subscription] = {}
        self._invoices_by_no: dict[str, Invoice] = {}
        self._invoices_by_id: dict[str, Invoice] = {}
        self._subs_sorted: list[Subscription] | None = None
        self._next_reference_no = 90000000 + rng.randint(100, 900)
        self._next_invoice_no = 11400000 + rng.randint(100, 900)
        self._next_invoice_id = 100
        self._bulk_batches = 0
        for i in range(self.seed_subscriptions):
            # The first two pin the mix; the rest are a coin toss.
            fixed = i == 0 or (i != 1 and rng.random() < 0.5)
            self._seed_subscription(rng, fixed=fixed)
        self._ensure_every_status(rng)

    def _new_reference_no(self, rng: random.Random | None = None) -> str:
        # Seeded numbers leave gaps like real ones; bulk numbers are dense to stay 8 digits.
        self._next_reference_no += rng.randint(1, 400) if rng else 1
        return str(self._next_reference_no)

    def _new_invoice_no(self, rng: random.Random | None = None) -> str:
        # A9: 8-digit numeric strings like the samples ("11400556").
        while True:
            self._next_invoice_no += rng.randint(1, 3) if rng else 1
            invoice_no = str(self._next_invoice_no)
            if invoice_no not in self._invoices_by_no:
                return invoice_no

    def _add_subscription(self, sub: Subscription) -> None:
        self._subs[sub.subscription_id] = sub
        self._subs_by_ref[sub.reference_no] = sub
        self._subs_sorted = None

    def _add_invoice(
        self,
        sub: Subscription,
        *,
        amount: int,
        agent_amount: int,
        val_date: datetime,
        status: int,
        invoice_no: str | None = None,
        currency: str = "TRY",
        rng: random.Random | None = None,
    ) -> Invoice:
        invoice = Invoice(
            invoice_id=self._next_invoice_id,
            invoice_no=invoice_no or self._new_invoice_no(rng),
            subscription=sub,
            amount=amount,
            agent_amount=agent_amount,
            company_amount=amount - agent_amount,
            val_date=val_date,
            status=status,
            currency=currency,
        )
        self._next_invoice_id += 1
        sub.invoices.append(invoice)
        self._invoices_by_no[invoice.invoice_no] = invoice
        self._invoices_by_id[str(invoice.invoice_id)] = invoice
        return invoice

    def _person(self, rng: random.Random) -> tuple[str, str, str]:
        first, last = rng.choice(FIRST_NAMES), rng.choice(SURNAMES)
        local = f"{first}.{last}".translate(ASCII_FOLD).lower()
        email = f"{local}{rng.randint(1, 99)}@{rng.choice(('example.com', 'example.com.tr'))}"
        gsm = "5" + rng.choice("0345") + "".join(rng.choices("0123456789", k=8))
        return f"{first} {last}", email, gsm

    def _seed_subscription(self, rng: random.Random, *, fixed: bool) -> None:
        now = self._now
        created = datetime(now.year, now.month, now.day) - timedelta(days=rng.randint(3, 730))
        created += timedelta(seconds=rng.randint(8 * 3600, 20 * 3600 - 1))
        # Charges at 10:00 on a day every month has.
        begin = (created + timedelta(days=rng.randint(1, 10))).replace(hour=10, minute=0)
        begin = begin.replace(day=min(begin.day, 28), second=0)
        if begin < created:
            begin = _add_months(begin, 1)
        interval = _weighted(rng, {2: 70, 1: 15, 0: 5, 3: 10})
        count = rng.randint(5, 8) if interval == 3 else rng.randint(5, 30)
        period = "2" if interval == 2 and rng.random() < 0.1 else "0"
        every = max(1, int(period))
        if fixed:
            base = rng.choice(FIXED_PRICES)
        else:
            base = rng.randint(80, 900) * 100 + rng.randint(0, 99)
        ratio = rng.choice((0, 0, 0.05, 0.08, 0.1, 0.15))
        name, email, gsm = self._person(rng)
        sub = Subscription(
            subscription_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            reference_no=self._new_reference_no(rng),
            name_surname=name,
            is_fixed_price=fixed,
            amount=base,
            agent_amount=round(base * ratio),
            company_amount=base - round(base * ratio),
            interval=interval,
            interval_count=count,
            period=period,
            begin_date=begin,
            created_date=created,
            end_user_email=email,
            end_user_gsm=gsm,
            end_user_desc=rng.choice(FIXED_DESCRIPTIONS if fixed else VARIABLE_DESCRIPTIONS),
            agent_id=rng.choice(AGENT_IDS),
            user_name=rng.choice(USER_NAMES),
            addcomission_to_amount=rng.random() < 0.2,
            group_reference_no=f"GRP-{rng.randint(1, 5):03d}" if rng.random() < 0.25 else "",
        )
        self._add_subscription(sub)
        cancelled_at = count if rng.random() > 0.08 else rng.randint(1, count - 1)
        for k in range(count):
            val_date = _step(begin, interval, k * every)
            if k >= cancelled_at:
                status = 5
            elif val_date < now:
                status = _weighted(rng, {3: 72, 4: 10, 2: 10, 5: 4, 6: 4})
            else:
                status = _weighted(rng, {0: 88, 5: 6, 6: 6})
            amount = base if fixed else max(1000, int(base * rng.uniform(0.6, 1.5)))
            invoice = self._add_invoice(
                sub,
                amount=amount,
                agent_amount=round(amount * ratio),
                val_date=val_date,
                status=status,
                rng=rng,
            )
            if val_date < now:
                self._seed_attempts(rng, invoice)
        if cancelled_at < count:
            sub.status = 5
        elif all(i.val_date < now for i in sub.invoices):
            sub.status = 3

    def _seed_attempts(self, rng: random.Random, invoice: Invoice) -> None:
        # Failed tries before the outcome; waiting records were never charged (A16).
        weights = ATTEMPT_FAILURES.get(invoice.status)
        failures = _weighted(rng, weights) if weights else 0
        moment = invoice.val_date + timedelta(minutes=rng.randint(0, 30))
        for n in range(failures + (invoice.status == 3)):
            succeeded = n == failures
            invoice.attempts.append(
                {
                    "attempt_date": moment.strftime(DATETIME_FORMAT),
                    "amount": invoice.amount,
                    "is_succeed": succeeded,
                    "xact_id": str(rng.randint(10**8, 10**9 - 1)),
                    "bank_error_message": "" if succeeded else rng.choice(BANK_ERRORS),
                }
            )
            moment += timedelta(days=1, minutes=rng.randint(0, 90))

    def _ensure_every_status(self, rng: random.Random) -> None:
        present = {i.status for i in self._invoices_by_no.values()}
        invoices = list(self._invoices_by_no.values())
        for status in STATUSES:
            if status not in present and invoices:
                rng.choice(invoices).status = status

    # --- Service interface ---------------------------------------------------------------

    def operation_of(self, request: Request) -> str:
        return request.path.rstrip("/").rsplit("/", 1)[-1]

    def payload_of(self, request: Request) -> Any:
        try:
            return self._parse_body(request)
        except _Fail:
            return None

    def handle(self, request: Request) -> Response:
        operation = self.operation_of(request)
        handler = self._handlers.get(operation)
        try:
            if handler is None or request.path.rstrip("/") != PATH_PREFIX + operation:
                raise _error(404, "invalid_request_error", "Servis bulunamadı", 9)
            if request.method != "POST":  # A2
                raise _error(405, "invalid_request_error", "Yalnızca POST metodu desteklenir", 11)
            self._authenticate(request)
            body = self._parse_body(request)
            result = handler(body)
        except _Fail as fail:
            return fail.response
        return Response.json(200, {"object_name": OBJECT_NAMES[operation], **result})

    def reject(self, operation: str, message: str | None) -> Response:
        """A5: a business refusal is HTTP 200 with code 1 in the operation's own object.

        A message "<code>: <text>" with a §2 return code picks another code, e.g.
        "10: İşlem zaman aşımına uğradı" for the `code 10 timeout` of A19.
        """
        code, text = 1, message or "İşlem gerçekleştirilemedi"
        prefixed = re.fullmatch(r"(\d{1,3}):\s*(.*)", text, re.DOTALL)
        if prefixed and int(prefixed[1]) in RETURN_CODES:
            code, text = int(prefixed[1]), prefixed[2]
        return Response.json(
            200, {"object_name": OBJECT_NAMES.get(operation), "code": code, "message": text}
        )

    def server_error(self, operation: str, status: int) -> Response:
        # A19 / §2: 5xx carries the error object with type api_error, result_code 8.
        return Response.json(
            status,
            {
                "type": "api_error",
                "message": "Beklenmeyen bir hata oluştu",
                "code": status,
                "result_code": 8,
            },
        )

    def state(self) -> dict[str, Any]:
        by_status = {str(s): 0 for s in STATUSES}
        for invoice in self._invoices_by_no.values():
            by_status[str(invoice.status)] += 1
        return {
            "counts": {
                "subscriptions": len(self._subs),
                "records": len(self._invoices_by_no),
                "records_by_status": by_status,
            },
            "subscriptions": [s.to_json() for s in self._subs.values()],
            "records": [i.to_json() for s in self._subs.values() for i in s.invoices],
        }

    def command(self, data: Mapping[str, Any]) -> Any:
        name = data.get("command")
        if name == "seed_bulk":
            try:
                count = int(data.get("subscriptions", 1))
                per = int(data.get("records_per_subscription", 1))
                status = int(data.get("status", 0))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"seed_bulk takes integers: {exc}") from exc
            if not (0 <= count <= 100_000 and 0 <= per <= 1_000 and count * per <= 1_000_000):
                raise ValueError("seed_bulk: at most 100000 subscriptions, 1000000 records")
            if status not in STATUSES:
                raise ValueError(f"seed_bulk: status must be one of {list(STATUSES)}")
            return self._seed_bulk(count, per, status)
        if name == "set_status":
            invoice = self._invoices_by_no.get(str(data.get("invoice_no")))
            if invoice is None:
                raise ValueError(f"no record with invoice_no {data.get('invoice_no')!r}")
            status = data.get("status")
            if type(status) is not int or status not in STATUSES:
                raise ValueError(f"set_status: status must be one of {list(STATUSES)}")
            invoice.status = status
            return invoice.to_json()
        raise ValueError(f"unknown paynet command {name!r}; one of ['seed_bulk', 'set_status']")

    def tamper(self, data: Mapping[str, Any]) -> Any:
        """Change or delete a record behind the product's back, as Paynet's panel would.

        {"invoice_no", "fields": {"status", "amount", "agent_amount", "company_amount" (kuruş),
        "val_date" ("dd.MM.yyyy HH:mm:ss")}} or {"invoice_no", "delete": true}.
        """
        invoice = self._invoices_by_no.get(str(data.get("invoice_no")))
        if invoice is None:
            raise ValueError(f"no record with invoice_no {data.get('invoice_no')!r}")
        if data.get("delete"):
            invoice.subscription.invoices.remove(invoice)
            del self._invoices_by_no[invoice.invoice_no]
            return {"deleted": invoice.invoice_no}
        fields = data.get("fields") or {}
        for key, value in fields.items():
            if key == "status":
                if type(value) is not int or value not in STATUSES:
                    raise ValueError(f"tamper: status must be one of {list(STATUSES)}")
                invoice.status = value
            elif key in ("amount", "agent_amount", "company_amount"):
                if type(value) is not int or value < 0:
                    raise ValueError(f"tamper: {key} is integer kuruş")
                setattr(invoice, key, value)
            elif key == "val_date":
                invoice.val_date = self._datetime(value, key)
            else:
                raise ValueError(f"tamper: cannot change {key!r}")
        return invoice.to_json()

    def _seed_bulk(self, count: int, per: int, status: int) -> dict[str, Any]:
        self._bulk_batches += 1
        rng = random.Random(f"paynet-bulk:{self.seed}:{self._bulk_batches}")
        ids = []
        for _ in range(count):
            name, email, gsm = self._person(rng)
            base = rng.randint(80, 900) * 100 + rng.randint(0, 99)
            created = self._now - timedelta(days=rng.randint(1, 60), minutes=rng.randint(0, 600))
            # Waiting records lie ahead, the others behind, as in the seeded data.
            first = (self._now + timedelta(days=1)) if status == 0 else _add_months(self._now, -per)
            begin = first.replace(day=min(first.day, 28), hour=10, minute=0, second=0)
            sub = Subscription(
                subscription_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                reference_no=self._new_reference_no(),
                name_surname=name,
                is_fixed_price=False,
                amount=base,
                agent_amount=0,
                company_amount=base,
                interval=2,
                interval_count=per,
                period="0",
                begin_date=begin,
                created_date=created.replace(second=rng.randint(0, 59)),
                end_user_email=email,
                end_user_gsm=gsm,
                end_user_desc=rng.choice(VARIABLE_DESCRIPTIONS),
                agent_id=rng.choice(AGENT_IDS),
                user_name=rng.choice(USER_NAMES),
            )
            self._add_subscription(sub)
            for k in range(per):
                amount = max(1000, int(base * rng.uniform(0.6, 1.5)))
                self._add_invoice(
                    sub,
                    amount=amount,
                    agent_amount=0,
                    val_date=_add_months(begin, k),
                    status=status,
                )
            ids.append(sub.subscription_id)
        return {"subscriptions": ids, "records": count * per}

    # --- transport rules -----------------------------------------------------------------

    def _authenticate(self, request: Request) -> None:
        if self.allowed_ips is not None and request.client_ip not in self.allowed_ips:
            raise _error(403, "authorization_error", "Bu IP adresinden erişim izni yok", 7)
        header = (request.header("Authorization") or "").strip()
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        ok = scheme.lower() == "basic" and bool(credential)
        if ok and not hmac.compare_digest(credential.encode(), self.secret_key.encode()):
            ok = self.allow_base64_auth and self._base64_matches(credential)
        if not ok:
            raise _error(401, "authorization_error", "API anahtarınız yanlış", 7)  # A1

    def _base64_matches(self, credential: str) -> bool:
        try:
            decoded = base64.b64decode(credential, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(decoded.encode(), f"{self.secret_key}:".encode())

    def _parse_body(self, request: Request) -> dict[str, Any]:
        content_type = (request.header("Content-Type") or "").lower()
        if "application/x-www-form-urlencoded" in content_type:
            # §1: the legacy reference also accepts form bodies.
            try:
                form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError as exc:
                raise _bad("İstek gövdesi okunamadı") from exc
            return {k: v[-1] for k, v in form.items()}
        try:
            body = request.json()
        except BadRequestBody as exc:
            raise _bad(f"İstek gövdesi geçerli bir JSON değil: {exc}") from exc
        if not isinstance(body, dict):
            raise _bad("İstek gövdesi bir JSON nesnesi olmalıdır")
        return body

    # --- field parsing (A3) --------------------------------------------------------------

    @staticmethod
    def _ident(body: Mapping[str, Any], key: str) -> str | None:
        """An optional identifier: "" and null mean "not given" (the §5.2 sample sends "")."""
        value = body.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _bad(f"'{key}' metin olmalıdır")
        return str(value).strip()

    @staticmethod
    def _int(body: Mapping[str, Any], key: str, *, minimum: int = 0) -> int | None:
        value = body.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            number = int(value)
        else:
            raise _bad(f"'{key}' tam sayı olmalıdır")
        if number < minimum:
            raise _bad(f"'{key}' en az {minimum} olmalıdır")
        return number

    @classmethod
    def _amount(cls, body: Mapping[str, Any], key: str) -> int | None:
        # A10: kuruş as an int or a string of one; "288.98" / "288,98" are refused.
        value = body.get(key)
        if isinstance(value, str) and ("." in value or "," in value):
            raise _bad(f"'{key}' kuruş cinsinden tam sayı olmalıdır (ör. 10,00 TL için 1000)")
        try:
            return cls._int(body, key, minimum=0)
        except _Fail as exc:
            raise _bad(f"'{key}' kuruş cinsinden negatif olmayan bir tam sayı olmalıdır") from exc

    @classmethod
    def _status(cls, body: Mapping[str, Any], key: str = "status") -> int | None:
        status = cls._int(body, key, minimum=0)
        if status is not None and status not in STATUSES:
            raise _bad(f"Geçersiz durum değeri: {status}")
        return status

    @staticmethod
    def _datetime(value: Any, key: str, *, date_only: bool = False) -> datetime:
        # A12: dd.MM.yyyy HH:mm:ss or dd.MM.yyyy; list filters take the date only (§6.1).
        formats = (DATE_FORMAT,) if date_only else (DATETIME_FORMAT, DATE_FORMAT)
        if isinstance(value, str):
            for fmt in formats:
                try:
                    return datetime.strptime(value.strip(), fmt)
                except ValueError:
                    continue
        expected = "gg.aa.yyyy" if date_only else "gg.aa.yyyy SS:dd:ss veya gg.aa.yyyy"
        raise _bad(f"'{key}' biçimi {expected} olmalıdır")

    # --- lookups (A4) --------------------------------------------------------------------

    def _find_subscription(self, body: Mapping[str, Any]) -> Subscription:
        subscription_id = self._ident(body, "subscription_id")
        reference_no = self._ident(body, "reference_no")
        if subscription_id is None and reference_no is None:
            raise _bad("subscription_id veya reference_no alanlarından en az biri gönderilmelidir")
        by_id = self._subs.get(subscription_id) if subscription_id is not None else None
        by_ref = self._subs_by_ref.get(reference_no) if reference_no is not None else None
        if (subscription_id is not None and by_id is None) or (
            reference_no is not None and by_ref is None
        ):
            raise _not_found("Düzenli ödeme bulunamadı")
        if by_id is not None and by_ref is not None and by_id is not by_ref:
            raise _not_found("subscription_id ve reference_no aynı düzenli ödemeye ait değil")
        sub = by_id or by_ref
        assert sub is not None
        return sub

    def _find_invoice(self, body: Mapping[str, Any]) -> Invoice:
        invoice_id = self._ident(body, "invoice_id")
        invoice_no = self._ident(body, "invoice_no")
        if invoice_id is None and invoice_no is None:
            raise _bad("invoice_id veya invoice_no alanlarından en az biri gönderilmelidir")
        by_id = self._invoices_by_id.get(invoice_id) if invoice_id is not None else None
        by_no = self._invoices_by_no.get(invoice_no) if invoice_no is not None else None
        if (invoice_id is not None and by_id is None) or (invoice_no is not None and by_no is None):
            raise _not_found("Ödeme kaydı bulunamadı")
        if by_id is not None and by_no is not None and by_id is not by_no:
            raise _not_found("invoice_id ve invoice_no aynı ödeme kaydına ait değil")
        invoice = by_id or by_no
        assert invoice is not None
        return invoice

    # --- paging (A14, A15) ---------------------------------------------------------------

    def _page(self, body: Mapping[str, Any], rows: list[Any]) -> dict[str, Any]:
        """Index paging: starting_after=15, limit=15 → rows 15–30; ending_before=90 → rows 75–90.

        In the answer, `starting_after` is the index to pass for the next page, `ending_before`
        the index to pass for the previous one, and `has_more` says rows follow this page.
        """
        limit = min(self._int(body, "limit", minimum=1) or DEFAULT_LIMIT, MAX_LIMIT)
        starting_after = self._int(body, "starting_after")
        ending_before = self._int(body, "ending_before")
        if starting_after is not None and ending_before is not None:
            raise _bad("starting_after ve ending_before birlikte gönderilemez")
        total = len(rows)
        if ending_before is not None:
            end = min(ending_before, total)
            start = max(0, end - limit)
        else:
            start = min(starting_after or 0, total)
            end = min(start + limit, total)
        page = rows[start:end]
        return {
            "code": 0,
            "message": SUCCESS_MESSAGE,
            "total": total,
            "total_count": len(page),
            "limit": limit,
            "ending_before": start,
            "starting_after": end,
            "has_more": end < total,
            "data": [row.to_json() for row in page],
        }

    # --- rules ---------------------------------------------------------------------------

    def _refusal(self, current: int, target: int) -> str | None:
        """A6 for one record: the refusal message, or None when the update is accepted.

        Order matters where the bullets overlap: 3 is never settable (so 3 → 3 is refused too),
        while re-sending a record's own status is an idempotent success (so 6 → 6 is code 0).
        """
        if target not in self.settable_statuses:
            return "Durum 3 (Done succeed) yalnızca Paynet çekimi ile oluşur, elle verilemez"
        if target == current:
            return None
        if current in self.final_statuses:
            if current == 3:
                return "Başarıyla tahsil edilmiş ödeme kaydının durumu değiştirilemez"
            return "Silinmiş ödeme kaydının durumu değiştirilemez"
        return None

    @staticmethod
    def _ok(**extra: Any) -> dict[str, Any]:
        return {"code": 0, "message": SUCCESS_MESSAGE, **extra}

    @staticmethod
    def _refuse(code: int, message: str) -> dict[str, Any]:
        return {"code": code, "message": message}

    # --- writes --------------------------------------------------------------------------

    def _invoice_status_update(self, body: dict[str, Any]) -> dict[str, Any]:
        status = self._status(body)
        if status is None:
            raise _bad("'status' alanı zorunludur")
        invoice = self._find_invoice(body)
        refusal = self._refusal(invoice.status, status)
        if refusal:
            return self._refuse(1, refusal)  # A5
        previous = invoice.status
        invoice.status = status
        self.record(
            "invoice_status_update",
            body,
            invoice_no=invoice.invoice_no,
            invoice_id=invoice.invoice_id,
            subscription_id=invoice.subscription.subscription_id,
            status_from=previous,
            status_to=status,
            changed=previous != status,
        )
        return self._ok()

    def _invoices_status_update_all(self, body: dict[str, Any]) -> dict[str, Any]:
        status = self._status(body)
        if status is None:
            raise _bad("'status' alanı zorunludur")
        sub = self._find_subscription(body)
        # A7: rule A6 per record; ineligible ones are skipped and the answer does not say which.
        changed = []
        for invoice in sub.invoices:
            if invoice.status != status and self._refusal(invoice.status, status) is None:
                invoice.status = status
                changed.append(invoice.invoice_no)
        self.record(
            "invoices_status_update_all",
            body,
            subscription_id=sub.subscription_id,
            reference_no=sub.reference_no,
            status_to=status,
            invoice_nos=changed,
            changed=bool(changed),
        )
        return self._ok()

    def _create_invoice(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("val_date") in (None, ""):
            raise _bad("'val_date' alanı zorunludur")
        val_date = self._datetime(body["val_date"], "val_date")
        amount = self._amount(body, "amount")
        if amount is None:
            raise _bad("'amount' alanı zorunludur")
        agent_amount = self._amount(body, "agent_amount")
        company_amount = self._amount(body, "company_amount")
        # A10: both parts must add up; one part implies the other; none → all to the company.
        if agent_amount is not None and company_amount is not None:
            if agent_amount + company_amount != amount:
                raise _bad("agent_amount ile company_amount toplamı amount değerine eşit olmalıdır")
        elif agent_amount is not None or company_amount is not None:
            part = agent_amount if agent_amount is not None else company_amount
            assert part is not None
            if part > amount:
                raise _bad("Bayi veya ana firma payı amount değerinden büyük olamaz")
            agent_amount = agent_amount if agent_amount is not None else amount - part
        else:
            agent_amount = 0
        currency = body.get("currency")
        if currency in (None, ""):
            currency = "TRY"
        elif not isinstance(currency, str) or currency.strip().upper() not in ("TRY", "TL"):
            raise _bad("Yalnızca TRY (TL) para birimi desteklenir")  # A13
        invoice_no = self._ident(body, "invoice_no")
        if invoice_no is not None and len(invoice_no) > 50:
            raise _bad("'invoice_no' en fazla 50 karakter olabilir")
        sub = self._find_subscription(body)
        if sub.is_fixed_price:  # A11
            return self._refuse(1, "Sabit tutarlı düzenli ödeme için fatura oluşturulamaz")
        # A8; a number used by another subscription is refused the same way, because
        # invoice_status_update finds records by invoice_no alone.
        if invoice_no is not None and invoice_no in self._invoices_by_no:
            return self._refuse(5, "Bu fatura numarası ile kayıt zaten mevcut")
        invoice = self._add_invoice(
            sub,
            amount=amount,
            agent_amount=agent_amount,
            val_date=val_date,
            status=0,
            invoice_no=invoice_no,
        )
        self.record(
            "create_invoice",
            body,
            invoice_no=invoice.invoice_no,
            invoice_id=invoice.invoice_id,
            subscription_id=sub.subscription_id,
            amount=invoice.amount,
            changed=True,
        )
        # §5.1: the answer does not carry the new record's ids.
        return self._ok()

    # --- reads ---------------------------------------------------------------------------

    def _list(self, body: dict[str, Any]) -> dict[str, Any]:
        for key in ("datab", "datbi"):
            if body.get(key) in (None, ""):
                raise _bad(f"'{key}' alanı zorunludur")
        first = self._datetime(body["datab"], "datab", date_only=True).date()
        last = self._datetime(body["datbi"], "datbi", date_only=True).date()
        agent_id = self._ident(body, "agent_id")
        group = self._ident(body, "group_reference_no")
        if self._subs_sorted is None:
            self._subs_sorted = sorted(
                self._subs.values(), key=lambda s: (s.created_date, s.subscription_id)
            )
        # A17: created_date between datab and datbi, both inclusive. show_all_agent is accepted
        # and ignored: the sandbox key is the main merchant's and sees every dealer.
        rows = [
            s
            for s in self._subs_sorted
            if first <= s.created_date.date() <= last
            and (agent_id is None or s.agent_id == agent_id)
            and (group is None or s.group_reference_no == group)
        ]
        return self._page(body, rows)

    def _subscription_detail(self, body: dict[str, Any]) -> dict[str, Any]:
        # A17: the subscription's fields at the top level of the body.
        return self._ok(**self._find_subscription(body).to_json())

    def _invoice_list(self, body: dict[str, Any]) -> dict[str, Any]:
        sub = self._find_subscription(body)
        status = self._status(body, "invoice_status")
        agent_id = self._ident(body, "agent_id")
        rows = sorted(
            (
                i
                for i in sub.invoices
                if (status is None or i.status == status)
                and (agent_id is None or agent_id == sub.agent_id)
            ),
            key=lambda i: (i.val_date, i.invoice_id),
        )
        return self._page(body, rows)

    def _invoice_attempt_list(self, body: dict[str, Any]) -> dict[str, Any]:
        # A16: either identifier is enough; never-charged records answer an empty list.
        invoice = self._find_invoice(body)
        return self._ok(data=[dict(a) for a in invoice.attempts])
