"""Simulated Payofin bill-payment API (institution catalogue, bill queries, collections report).

The contract is /work/shared/upstreams/payofin.md; every "ASSUMPTION n" below refers to its §9.

Wire rules in short:
- Business results are HTTP 200 with `result`/`resultCode`/`resultMessage` (ASSUMPTION 1); only a
  malformed request (400), an unknown path (404) and a wrong method (405) use other statuses, with
  the sandbox-only code -900 (ASSUMPTIONS 4, 15).
- Paths below /payofin are matched case-insensitively (ASSUMPTION 15); the /payofin prefix itself
  is routed by the server and is case-sensitive.
- Fault kind "reject" answers HTTP 200 `{"result": false, "resultCode": -18, "resultMessage": ...}`.
  A message may start with a code, e.g. "-24: Abone başka bankada işlemde", to pick the code.
  On the multiple query a rule with `match` refuses only the matched entries (default code -6,
  ASSUMPTION 14), see `partial_reject`.
- Fault kind "status" (and a crash) answers the given 5xx with the JSON envelope
  `{"result": false, "resultCode": -18, "resultMessage": "Sistem hatası oluştu."}` (-18 is
  Payofin's "system failure"); clients must not depend on any 5xx body.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .core import ISTANBUL, BadRequestBody, FaultRule, Ledger, Request, Response, Service

SUCCESS_MESSAGE = "İşlem Başarılı"
NO_DEBT_MESSAGE = "Abone Numarasına Ait Borç Kaydı Bulunmamaktadır"
MAX_QUERIES = 15  # payofin.md §4: at most 15 queries per multiple query
MAX_FIRM_REF_LEN = 15  # payofin.md §4: firmRefNo max 15 characters
MAX_REPORT_DAYS = 15  # payofin.md §5.4: report range limited to 15 days (-9)
SANDBOX_ERROR = -900  # sandbox-only code for malformed requests (ASSUMPTION 4)

# Turkish texts for the result codes the sandbox produces (payofin.md §2 paraphrases them).
MESSAGES: dict[int, str] = {
    1: SUCCESS_MESSAGE,
    -1: NO_DEBT_MESSAGE,
    -2: "Bakiye bilgisi alınamadı.",
    -3: "Kurumun işlem saatleri dışındasınız.",
    -4: "Resmi tatil günlerinde bu kurum için borç sorgulaması yapılamaz.",
    -5: "20.000 TL ve üzeri tek işlem yapılamaz.",
    -6: "Kurum ile bağlantı sorunu yaşanmaktadır, lütfen daha sonra tekrar deneyiniz.",
    -7: "Bayinin işlem yapma yetkisi bulunmamaktadır.",
    -9: "Rapor tarih aralığı 15 günden fazla olamaz.",
    -11: "Talep edilen işleme ait kayıt bulunamadı.",
    -14: "Geçersiz abone numarası.",
    -15: "Geçersiz firma referans numarası.",
    -16: "Geçersiz ek numara (iş kodu).",
    -17: "Geçersiz kurum kodu.",
    -18: "Sistem hatası oluştu.",
    -22: "Kullanıcı bilgileri hatalı.",
    -23: "Listelenecek kurum bulunamadı.",
    -24: "Abone şu anda başka bir bankada işlem görmektedir, lütfen daha sonra tekrar deneyiniz.",
    -26: "Rapor başlangıç ve bitiş tarihi boş olamaz.",
}

DIGITS = "0123456789"
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")  # request dates are yyyy-mm-dd (payofin.md §1)


def mask_matches(mask: str, value: str) -> bool:
    """Whether `value` fits a Payofin `fields.mask` (ASSUMPTION 16).

    `9` a required digit, `#` an optional digit, `A` a required letter, `*` a required letter or
    digit, anything else that exact character. `#` may only form the tail of the mask, so
    "99999999###" means 8 to 11 digits. An empty mask means no format rule. Raises ValueError for
    a mask with `#` before another character (not a mask the sandbox fixes).
    """
    if not mask:
        return True
    required = mask.rstrip("#")
    if "#" in required:
        raise ValueError(f"mask {mask!r}: '#' (optional digit) only after the required characters")
    optional = len(mask) - len(required)
    if not len(required) <= len(value) <= len(required) + optional:
        return False
    for m, ch in zip(required, value, strict=False):
        if m == "9":
            ok = ch in DIGITS
        elif m == "A":
            ok = ch.isalpha()
        elif m == "*":
            ok = ch in DIGITS or ch.isalpha()
        else:
            ok = ch == m
        if not ok:
            return False
    return all(ch in DIGITS for ch in value[len(required) :])


def mask_name(name: str) -> str:
    """Payofin's masked customer name: "DENİZ ÖZTÜRK" -> "DE*** ÖZ****" (payofin.md §3).

    Words of up to 3 letters keep their first letter, longer ones their first two.
    """
    words = []
    for word in name.split():
        keep = 1 if len(word) <= 3 else 2
        words.append(word[:keep] + "*" * (len(word) - keep))
    return " ".join(words)


def _money(value: Decimal) -> float:
    # Amounts are TL decimals with 2 places on the wire (payofin.md §3, ASSUMPTION 10).
    return float(value.quantize(Decimal("0.01")))


@dataclass(frozen=True)
class Institution:
    soot_code: int
    name: str
    soot_type_code: int  # payofin.md §5.2: 1 electricity, 2 water, 3 gas, 4 phone, 5 internet
    invoice_type: str
    city_code: int | None  # None = nationwide: listed for every cityCode filter
    description: str
    title: str  # fields.title: label of the subscriber number
    field_description: str
    mask: str
    additional_no_required: bool = False
    partial_amount: bool = False
    merchant_profit: Decimal = Decimal("2.00")  # service fee per bill (ASSUMPTION 10)
    payofin_commission: Decimal = Decimal("1.00")  # Payofin's share of merchant_profit
    amount_range: tuple[int, int] = (50, 3000)  # TL, for generated bills

    def catalogue(self, *, commissions: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "sootCode": self.soot_code,
            "sootName": self.name,
            "invoiceType": self.invoice_type,
            "description": self.description,
        }
        if commissions:
            # Strings with 2 decimals (payofin.md §5.2, ASSUMPTION 12); totalCommission is the
            # whole service amount per bill, i.e. merchantProfit.
            entry["payofinCommission"] = f"{self.payofin_commission:.2f}"
            entry["totalCommission"] = f"{self.merchant_profit:.2f}"
        # `fields` is a single object (ASSUMPTION 12).
        entry["fields"] = {
            "title": self.title,
            "description": self.field_description,
            "mask": self.mask,
            "required": True,
            "additionalNoRequired": self.additional_no_required,
            "partialAmount": self.partial_amount,
        }
        return entry


ELECTRICITY, WATER, GAS, PHONE, INTERNET = 1, 2, 3, 4, 5

# The fixed catalogue. Masks cover every mask character: exact digits, optional tail digits,
# a letter, letter-or-digit and literals (ASSUMPTION 16).
INSTITUTIONS: tuple[Institution, ...] = (
    Institution(
        1, "İSKİ", WATER, "Su Faturası", 34,
        "İstanbul Su ve Kanalizasyon İdaresi Genel Müdürlüğü",
        "Abone Numarası", "Faturanın üzerindeki 7-11 haneli abone numarası",
        # 7-11 digits so the published sample's numbers (7, 10 and 11 digits) are valid.
        "9999999####", partial_amount=True, amount_range=(50, 1500),
    ),
    Institution(
        2, "ASKİ", WATER, "Su Faturası", 6,
        "Ankara Su ve Kanalizasyon İdaresi Genel Müdürlüğü",
        "Abone Numarası", "Faturanın üzerindeki 8-11 haneli abone numarası",
        "99999999###", amount_range=(50, 1200),
    ),
    Institution(
        3, "İZSU", WATER, "Su Faturası", 35,
        "İzmir Su ve Kanalizasyon İdaresi Genel Müdürlüğü",
        "Abone Numarası", "Faturanın üzerindeki 9 haneli abone numarası",
        "999999999", amount_range=(50, 1200),
    ),
    Institution(
        10, "CK Boğaziçi Elektrik", ELECTRICITY, "Elektrik Faturası", 34,
        "CK Boğaziçi Elektrik Perakende Satış A.Ş. (İstanbul Avrupa Yakası)",
        "Tekil Kod", "Faturanın üzerindeki 10 haneli tekil kod",
        "9999999999", merchant_profit=Decimal("2.50"), payofin_commission=Decimal("1.25"),
        amount_range=(150, 3000),
    ),
    Institution(
        11, "Enerjisa Başkent", ELECTRICITY, "Elektrik Faturası", 6,
        "Enerjisa Başkent Elektrik Perakende Satış A.Ş.",
        "Tesisat Numarası", "Faturanın üzerindeki 10 haneli tesisat numarası",
        "9999999999", merchant_profit=Decimal("2.50"), payofin_commission=Decimal("1.25"),
        amount_range=(150, 3000),
    ),
    Institution(
        20, "İGDAŞ", GAS, "Doğalgaz Faturası", 34,
        "İstanbul Gaz Dağıtım Sanayi ve Ticaret A.Ş.",
        "Tesisat Numarası", "Faturanın üzerindeki 9 haneli tesisat numarası",
        "999999999", amount_range=(100, 3000),
    ),
    Institution(
        21, "Başkentgaz", GAS, "Doğalgaz Faturası", 6,
        "Başkentgaz Ankara Doğal Gaz Dağıtım A.Ş.",
        "Abone Numarası", "Bir harf ve 7 rakamdan oluşan abone numarası (ör. B1234567)",
        "A9999999", amount_range=(100, 3000),
    ),
    Institution(
        30, "Türk Telekom", PHONE, "Telefon Faturası", None,
        "Türk Telekomünikasyon A.Ş. sabit hat faturaları",
        "Telefon Numarası", "Başında 0 olmadan 10 haneli telefon numarası; "
        "ek numara olarak faturadaki hizmet numarası zorunludur",
        "9999999999", additional_no_required=True, merchant_profit=Decimal("1.50"),
        payofin_commission=Decimal("0.75"), amount_range=(50, 600),
    ),
    Institution(
        40, "TTNET", INTERNET, "İnternet Faturası", None,
        "TTNET A.Ş. internet faturaları",
        "Hizmet Numarası", "Faturanın üzerindeki 10-12 haneli hizmet numarası",
        "9999999999##", merchant_profit=Decimal("1.50"), payofin_commission=Decimal("0.75"),
        amount_range=(150, 900),
    ),
    Institution(
        41, "Superonline", INTERNET, "İnternet Faturası", None,
        "Türkcell Superonline İletişim Hizmetleri A.Ş.",
        "Müşteri Numarası", "SOL- ile başlayan 7 karakterli müşteri numarası (ör. SOL-AB12345)",
        "SOL-*******", merchant_profit=Decimal("1.50"), payofin_commission=Decimal("0.75"),
        amount_range=(150, 900),
    ),
)  # fmt: skip

FIRST_NAMES = (
    "AHMET", "AYŞE", "MEHMET", "FATMA", "MUSTAFA", "EMİNE", "ALİ", "HATİCE", "HÜSEYİN", "ZEYNEP",
    "HASAN", "ELİF", "İBRAHİM", "MERVE", "MURAT", "ÖZLEM", "EMRE", "BÜŞRA", "CAN", "GÜL",
    "İSMAİL", "SEDA", "OĞUZ", "DERYA", "KEMAL", "ŞEYMA", "YUSUF", "ÇAĞLA", "BURAK", "EBRU",
)  # fmt: skip
LAST_NAMES = (
    "YILMAZ", "KAYA", "DEMİR", "ŞAHİN", "ÇELİK", "YILDIZ", "YILDIRIM", "ÖZTÜRK", "AYDIN",
    "ÖZDEMİR", "ARSLAN", "DOĞAN", "KILIÇ", "ASLAN", "ÇETİN", "KARA", "KOÇ", "KURT", "ÖZKAN",
    "ŞİMŞEK", "POLAT", "ÖZCAN", "KORKMAZ", "ÇAKIR", "ERDOĞAN", "GÜNEŞ", "AKSOY", "TEKİN",
    "BOSTANCIOĞLU", "KARAKAYA",
)  # fmt: skip


@dataclass(frozen=True)
class Bill:
    invoice_no: str
    amount: Decimal
    exp_date: dt.date


@dataclass(frozen=True)
class Subscriber:
    soot_code: int
    subscriber_no: str
    customer_name: str  # unmasked; masked on output
    bills: tuple[Bill, ...]

    def as_state(self) -> dict[str, Any]:
        return {
            "subscriberNo": self.subscriber_no,
            "customerName": self.customer_name,
            "maskedName": mask_name(self.customer_name),
            "bills": [
                {
                    "invoiceNo": b.invoice_no,
                    "invoiceAmount": _money(b.amount),
                    "expDate": b.exp_date.strftime("%d.%m.%Y"),
                }
                for b in self.bills
            ],
        }


def _random_name(rng: random.Random) -> str:
    first = rng.choice(FIRST_NAMES)
    if rng.random() < 0.15:  # some people go by two given names
        first += " " + rng.choice(FIRST_NAMES)
    return f"{first} {rng.choice(LAST_NAMES)}"


def _random_subscriber_no(rng: random.Random, mask: str) -> str:
    required = mask.rstrip("#")
    out = []
    for m in required:
        if m == "9":
            out.append(rng.choice(DIGITS))
        elif m == "A":
            out.append(rng.choice("ABCDEFGHKMNPRSTUVYZ"))
        elif m == "*":
            out.append(rng.choice("ABCDEFGHKMNPRSTUVYZ" + DIGITS))
        else:
            out.append(m)
    out += [rng.choice(DIGITS) for _ in range(rng.randint(0, len(mask) - len(required)))]
    return "".join(out)


def _random_bills(
    rng: random.Random, inst: Institution, count: int, today: dt.date
) -> tuple[Bill, ...]:
    # Oldest first, one per month: the newest is due around now, older ones are overdue.
    lo, hi = inst.amount_range
    newest_due = today + dt.timedelta(days=rng.randint(-5, 20))
    bills = []
    for i in range(count):
        bills.append(
            Bill(
                invoice_no=str(rng.randrange(10**11, 10**12)),
                amount=Decimal(rng.randint(lo * 100, hi * 100)) / 100,
                exp_date=newest_due - dt.timedelta(days=30 * (count - 1 - i)),
            )
        )
    return tuple(bills)


def _hashed_subscriber(inst: Institution, subscriber_no: str, today: dt.date) -> Subscriber:
    """Outcome for a valid subscriber number that is not in the seeded set.

    Rule: sha256 of "<sootCode>|<subscriberNo>" seeds a private RNG (independent of the sandbox
    seed); 60% of numbers get 1-3 open bills (1: 60%, 2: 25%, 3: 15%), 40% have no debt (-1).
    Same number, same bills (amounts, names, invoice numbers; due dates relative to the day of
    the last reset), so a benchmark can query any number of arbitrary valid numbers.
    """
    digest = hashlib.sha256(f"{inst.soot_code}|{subscriber_no}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    name = _random_name(rng)
    if rng.random() >= 0.60:
        return Subscriber(inst.soot_code, subscriber_no, name, ())
    count = rng.choices((1, 2, 3), weights=(60, 25, 15))[0]
    return Subscriber(inst.soot_code, subscriber_no, name, _random_bills(rng, inst, count, today))


def _sample_subscribers(today: dt.date) -> list[Subscriber]:
    """The published multiple-query sample (payofin.md §4) as fixed İSKİ fixtures, any seed."""
    due = today + dt.timedelta(days=10)
    return [
        Subscriber(1, "01345677000", "DENİZ ÖZTÜRK", (Bill("0000000", Decimal("560.00"), due),)),
        Subscriber(1, "01345699000", "ALİ BOSTANCIOĞLU", (Bill("0000000", Decimal("2.00"), due),)),
        Subscriber(1, "0134569000", "ABİDE FAHRİOĞLU", (Bill("0000000", Decimal("57.00"), due),)),
        Subscriber(1, "1345600", "SELİN KAYA", ()),
    ]


def _parse_reject_message(message: str | None, default_code: int) -> tuple[int, str]:
    """'-24: text' -> (-24, 'text'); no code prefix -> (default_code, message or default text)."""
    if message:
        m = re.match(r"\s*(-?\d+)\s*(?::\s*(.*))?\Z", message, re.DOTALL)
        if m:
            code = int(m.group(1))
            return code, (m.group(2) or "").strip() or MESSAGES.get(code, MESSAGES[-18])
        return default_code, message
    return default_code, MESSAGES[default_code]


def _envelope(code: int, message: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "result": code == 1,
        "resultCode": code,
        "resultMessage": MESSAGES.get(code, "") if message is None else message,
        **extra,
    }


class _Malformed(Exception):
    """The request as a whole is malformed: HTTP 400, code -900 (ASSUMPTION 4)."""


# (method, handler name) per lower-cased path below /payofin (ASSUMPTION 15).
ROUTES: dict[str, tuple[str, str]] = {
    "/invoices/multipleinvoicequery": ("POST", "_multiple_query"),
    "/invoices/invoicequery": ("POST", "_single_query"),
    "/invoices/sootlist": ("GET", "_soot_list"),
    "/invoices/sootlistbytype": ("POST", "_soot_list_by_type"),
    "/invoices/invoicelist": ("POST", "_invoice_list"),
}

# Decides per query entry whether a "reject" fault refuses it: (code, message) or None.
Refusal = Callable[[Mapping[str, Any]], tuple[int, str] | None]


class PayofinService(Service):
    name = "payofin"
    prefix = "/payofin"

    def __init__(self, *, seed: int, ledger: Ledger) -> None:
        self.api_key = os.environ.get("PAYOFIN_API_KEY", "3f0126be-0000-4000-8000-sandboxapikey")
        self.secret_key = os.environ.get(
            "PAYOFIN_SECRET_KEY", "3f0126be-0000-4000-8000-sandboxsecret"
        )
        self.institutions = {inst.soot_code: inst for inst in INSTITUTIONS}
        super().__init__(seed=seed, ledger=ledger)

    # --- state -----------------------------------------------------------------------------

    def reset(self, seed: int) -> None:
        rng = random.Random(seed)
        # Due and payment dates are relative to the day of the reset; everything else depends
        # on the seed only.
        # Istanbul's day, as Paynet's: a machine on UTC is a day behind from 21:00 to midnight.
        self.today = self.day or dt.datetime.now(ISTANBUL).date()
        self.auth_http_401 = False
        self.allowed_ips: set[str] | None = None  # None: allow-list off (ASSUMPTION 3)
        self.next_query_id = rng.randrange(600_000, 700_000)
        self.issued_query_ids = 0
        self.subscribers: dict[tuple[int, str], Subscriber] = {}
        for sub in _sample_subscribers(self.today):
            self.subscribers[(sub.soot_code, sub.subscriber_no)] = sub
        self.seeded: dict[int, list[Subscriber]] = {}
        for inst in INSTITUTIONS:
            # 12 per institution: 4 without debt, 5 with one bill, 3 with several.
            counts = [0] * 4 + [1] * 5 + [2, 2, 3]
            rng.shuffle(counts)
            self.seeded[inst.soot_code] = []
            for count in counts:
                number = _random_subscriber_no(rng, inst.mask)
                while (inst.soot_code, number) in self.subscribers:
                    number = _random_subscriber_no(rng, inst.mask)
                sub = Subscriber(
                    inst.soot_code,
                    number,
                    _random_name(rng),
                    _random_bills(rng, inst, count, self.today),
                )
                self.subscribers[(inst.soot_code, number)] = sub
                self.seeded[inst.soot_code].append(sub)
        self.payments = self._seed_payments(rng)

    def _seed_payments(self, rng: random.Random) -> list[dict[str, Any]]:
        """Collections for the report (payofin.md §5.4): 0-2 a day over the 45 days before the
        reset, at least one on each of the last 3 days."""
        payments = []
        payment_id = rng.randrange(1_000, 5_000)
        subs = [s for s in self.subscribers.values() if s.bills]
        for days_ago in range(45, 0, -1):
            n = rng.choice((0, 1, 1, 2))
            if days_ago <= 3:
                n = max(n, 1)
            for _ in range(n):
                sub = rng.choice(subs)
                inst = self.institutions[sub.soot_code]
                bill = rng.choice(sub.bills)
                paid_at = dt.datetime.combine(
                    self.today - dt.timedelta(days=days_ago),
                    dt.time(rng.randint(8, 21), rng.randint(0, 59), rng.randint(0, 59)),
                )
                payment_id += rng.randint(1, 40)
                payments.append(
                    {
                        "invoicePaymentId": payment_id,
                        "invoiceType": inst.invoice_type,
                        "sootName": inst.name,
                        "subscriberNo": sub.subscriber_no,
                        "customerName": mask_name(sub.customer_name),
                        "invoiceNo": bill.invoice_no,
                        "expDate": bill.exp_date.strftime("%d.%m.%Y"),
                        "invoiceAmount": _money(bill.amount),
                        "profit": _money(inst.merchant_profit),
                        "paymentDate": paid_at.isoformat(),  # .NET-style "2022-05-10T14:32:11"
                        "status": "Cancelled" if rng.random() < 0.1 else "Paid",
                    }
                )
        return payments

    def state(self) -> Any:
        return {
            "today": self.today.isoformat(),
            "auth_http_401": self.auth_http_401,
            "allowed_ips": None if self.allowed_ips is None else sorted(self.allowed_ips),
            "next_invoice_query_id": self.next_query_id,
            "issued_invoice_query_ids": self.issued_query_ids,
            "institutions": [
                {
                    **inst.catalogue(commissions=True),
                    "sootTypeCode": inst.soot_type_code,
                    "cityCode": inst.city_code,
                    "merchantProfit": _money(inst.merchant_profit),
                }
                for inst in INSTITUTIONS
            ],
            # Seeded subscribers per sootCode (string keys for JSON); the published sample's
            # İSKİ numbers are listed separately. Other valid numbers follow _hashed_subscriber.
            "subscribers": {
                str(code): [s.as_state() for s in subs] for code, subs in self.seeded.items()
            },
            "sample_subscribers": [s.as_state() for s in _sample_subscribers(self.today)],
            "unknown_subscriber_rule": (
                "sha256('<sootCode>|<subscriberNo>') seeds the outcome: 60% 1-3 bills, 40% no debt"
            ),
            "payments": len(self.payments),
        }

    def command(self, data: Mapping[str, Any]) -> Any:
        command = data.get("command")
        if command == "auth_http_401":
            value = data.get("value", True)
            if not isinstance(value, bool):
                raise ValueError("auth_http_401 takes a boolean 'value'")
            self.auth_http_401 = value
            return {"ok": True, "auth_http_401": value}
        if command == "set_allowed_ips":
            ips = data.get("ips")
            if ips is not None and (
                not isinstance(ips, list) or not all(isinstance(ip, str) for ip in ips)
            ):
                raise ValueError("set_allowed_ips takes 'ips': a list of strings, or null for off")
            self.allowed_ips = None if ips is None else set(ips)
            return {"ok": True, "allowed_ips": None if ips is None else sorted(self.allowed_ips)}
        raise ValueError(
            f"unknown payofin command {command!r}; one of ['auth_http_401', 'set_allowed_ips']"
        )

    # --- framework hooks -------------------------------------------------------------------

    def operation_of(self, request: Request) -> str:
        return request.path.rstrip("/").rsplit("/", 1)[-1].lower()

    def payload_of(self, request: Request) -> Any:
        payload = super().payload_of(request)
        # Fault rules on the multiple query match per entry, e.g. {"subscriberNo": "..."}.
        if (
            self.operation_of(request) == "multipleinvoicequery"
            and isinstance(payload, dict)
            and isinstance(payload.get("invoiceQueryList"), list)
        ):
            return payload["invoiceQueryList"]
        return payload

    def handle(self, request: Request) -> Response:
        return self._dispatch(request, None)

    def reject(self, operation: str, message: str | None) -> Response:
        code, text = _parse_reject_message(message, -18)
        if operation == "invoicequery":
            # Same shape as a failed single query (ASSUMPTION 11).
            return Response.json(200, _envelope(code, text, invoiceList=[]))
        # For the multiple query this is the whole-request failure envelope of payofin.md §2.
        return Response.json(200, _envelope(code, text))

    def partial_reject(self, operation: str, request: Request, rule: FaultRule) -> Response | None:
        """A "reject" rule with `match` on the multiple query refuses only the matched entries
        (ASSUMPTION 14): they get result false, the rule's message and code -6 (or the code the
        message starts with, "-24: ..."); the other entries are queried normally. Credentials,
        IP and request shape are still checked first, as for any request. Needs the server's
        partial_reject hook (sandbox/core.py); `apply` is moot here."""
        if operation != "multipleinvoicequery" or not rule.match:
            return None
        refusal = _parse_reject_message(rule.message, -6)

        def refuse(entry: Mapping[str, Any]) -> tuple[int, str] | None:
            hit = all(str(entry.get(k)) == str(v) for k, v in rule.match.items())
            return refusal if hit else None

        return self._dispatch(request, refuse)

    def server_error(self, operation: str, status: int) -> Response:
        return Response.json(status, _envelope(-18))

    # --- routing, credentials --------------------------------------------------------------

    def _dispatch(self, request: Request, refuse: Refusal | None) -> Response:
        path = request.path.rstrip("/").lower()
        route = ROUTES.get(path)
        if route is None:
            return Response.json(404, _envelope(SANDBOX_ERROR, f"Servis bulunamadı: {path}"))
        method, handler = route
        if request.method != method:
            body = _envelope(SANDBOX_ERROR, f"{request.method} desteklenmiyor; {method} kullanın.")
            return Response.json(405, body, Allow=method)
        denied = self._check_access(request)
        if denied is not None:
            return denied
        try:
            if handler == "_multiple_query":
                return self._multiple_query(request, refuse)
            return getattr(self, handler)(request)
        except _Malformed as exc:
            return Response.json(400, _envelope(SANDBOX_ERROR, str(exc)))

    def _check_access(self, request: Request) -> Response | None:
        api_key = request.header("ApiKey") or ""
        secret = request.header("SecretKey") or ""
        key_ok = hmac.compare_digest(api_key.encode(), self.api_key.encode())
        secret_ok = hmac.compare_digest(secret.encode(), self.secret_key.encode())
        if not (key_ok and secret_ok):
            # ASSUMPTION 2: the envelope and nothing else; HTTP 200 unless switched to 401.
            return Response.json(401 if self.auth_http_401 else 200, _envelope(-22))
        if self.allowed_ips is not None and request.client_ip not in self.allowed_ips:
            return Response.json(200, _envelope(-7))  # ASSUMPTION 3
        return None

    @staticmethod
    def _body_object(request: Request, *, empty_ok: bool = False) -> dict[str, Any]:
        if empty_ok and not request.body.strip():
            return {}
        try:
            body = request.json()
        except BadRequestBody as exc:
            raise _Malformed(f"İstek gövdesi geçerli bir JSON değil: {exc}") from exc
        if not isinstance(body, dict):
            raise _Malformed("İstek gövdesi bir JSON nesnesi olmalıdır.")
        return body

    # --- bill queries ----------------------------------------------------------------------

    def _multiple_query(self, request: Request, refuse: Refusal | None) -> Response:
        body = self._body_object(request)
        queries = body.get("invoiceQueryList")
        # ASSUMPTION 4: the request is refused whole, nothing is queried.
        if not isinstance(queries, list):
            raise _Malformed("invoiceQueryList zorunludur ve bir dizi olmalıdır.")
        if not queries:
            raise _Malformed("invoiceQueryList boş olamaz.")
        if len(queries) > MAX_QUERIES:
            raise _Malformed(f"Tek istekte en fazla {MAX_QUERIES} sorgu gönderilebilir.")
        if not all(isinstance(q, dict) for q in queries):
            raise _Malformed("invoiceQueryList elemanları JSON nesnesi olmalıdır.")
        # One entry per query, in request order (ASSUMPTION 5).
        entries = [self._query_one(q, refuse) for q in queries]
        self._record("multipleinvoicequery", body, queries, entries)
        return Response.json(200, {"invoices": entries})

    def _single_query(self, request: Request) -> Response:
        body = self._body_object(request)
        entry = self._query_one(body, None)
        # Its own ledger operation (same details as the multiple query), so counting
        # "multipleinvoicequery" entries counts exactly the product's batch requests.
        self._record("invoicequery", body, [body], [entry])
        # ASSUMPTION 11: the envelope first, then the bills.
        invoice_list = entry.pop("invoiceList")
        return Response.json(200, {**entry, "invoiceList": invoice_list})

    def _record(
        self,
        operation: str,
        body: dict[str, Any],
        queries: list[dict[str, Any]],
        entries: list[dict[str, Any]],
    ) -> None:
        self.record(
            operation,
            body,
            count=len(queries),
            firmRefNos=[q.get("firmRefNo") for q in queries],
            subscriberNos=[q.get("subscriberNo") for q in queries],
            sootCodes=[q.get("sootCode") for q in queries],
            resultCodes=[e["resultCode"] for e in entries],
            invoiceQueryIds=[b["invoiceQueryId"] for e in entries for b in e["invoiceList"]],
        )

    def _query_one(self, query: Mapping[str, Any], refuse: Refusal | None) -> dict[str, Any]:
        """One query per ASSUMPTION 6: validate, then answer from the fixtures."""
        soot_code = self._soot_code(query.get("sootCode"))
        inst = None if soot_code is None else self.institutions.get(soot_code)
        if inst is None:
            return self._failed(-17)
        subscriber_no = query.get("subscriberNo")
        if not isinstance(subscriber_no, str) or not subscriber_no:
            return self._failed(-14)
        if not mask_matches(inst.mask, subscriber_no):
            return self._failed(-14)
        firm_ref = query.get("firmRefNo")
        # Duplicates are fine (ASSUMPTION 8); only empty or too long is refused.
        if not isinstance(firm_ref, str) or not firm_ref or len(firm_ref) > MAX_FIRM_REF_LEN:
            return self._failed(-15)
        additional = query.get("additionalNo")
        if additional is None:
            additional = ""
        if not isinstance(additional, str) or (inst.additional_no_required and not additional):
            return self._failed(-16)
        if refuse is not None and (refusal := refuse(query)) is not None:
            # Operational refusal by fault injection (ASSUMPTION 14), after validation as
            # Payofin validates before it asks the institution.
            return self._failed(*refusal)
        sub = self.subscribers.get((inst.soot_code, subscriber_no))
        if sub is None:
            sub = _hashed_subscriber(inst, subscriber_no, self.today)
        if not sub.bills:
            return self._failed(-1)
        invoice_list = []
        for bill in sub.bills:
            # A fresh id per bill per successful query (ASSUMPTION 9).
            query_id = self.next_query_id
            self.next_query_id += 1
            self.issued_query_ids += 1
            invoice_list.append(
                {
                    "invoiceQueryId": query_id,
                    "subscriberNo": sub.subscriber_no,
                    "customerName": mask_name(sub.customer_name),
                    "invoiceNo": bill.invoice_no,
                    "expDate": bill.exp_date.strftime("%d.%m.%Y"),
                    "invoiceAmount": _money(bill.amount),
                    "merchantProfit": _money(inst.merchant_profit),
                    "totalAmount": _money(bill.amount + inst.merchant_profit),
                    "sootCode": inst.soot_code,
                }
            )
        return {"invoiceList": invoice_list, **_envelope(1)}

    @staticmethod
    def _soot_code(value: Any) -> int | None:
        # ASSUMPTION 7: a string of digits or an integer (not a bool, not a float).
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value)
        return None

    @staticmethod
    def _failed(code: int, message: str | None = None) -> dict[str, Any]:
        # A failed entry carries nothing that identifies its query (ASSUMPTION 6).
        return {"invoiceList": [], **_envelope(code, message)}

    # --- catalogue ---------------------------------------------------------------------------

    def _soot_list(self, request: Request) -> Response:
        items = [inst.catalogue(commissions=False) for inst in INSTITUTIONS]
        return Response.json(200, _envelope(1, sootList=items))

    def _soot_list_by_type(self, request: Request) -> Response:
        # Both filters optional; an empty body or {} lists everything (payofin.md §5.2).
        body = self._body_object(request, empty_ok=True)
        type_code = self._filter_code(body, "sootTypeCode")
        city_code = self._filter_code(body, "cityCode")
        items = [
            inst.catalogue(commissions=True)
            for inst in INSTITUTIONS
            if type_code in (None, inst.soot_type_code)
            # Nationwide institutions (no city) serve every province.
            and (city_code is None or inst.city_code in (None, city_code))
        ]
        if not items:
            return Response.json(200, _envelope(-23, sootList=[]))
        return Response.json(200, _envelope(1, sootList=items))

    @staticmethod
    def _filter_code(body: Mapping[str, Any], key: str) -> int | None:
        value = body.get(key)
        # 0 counts as "no filter": a .NET client's unset int serialises as 0.
        if value is None or value == "" or value == 0:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value) or None
        raise _Malformed(f"{key} bir tamsayı olmalıdır.")

    # --- collections report -------------------------------------------------------------------

    def _invoice_list(self, request: Request) -> Response:
        body = self._body_object(request)
        first_raw, last_raw = body.get("firstDate"), body.get("lastDate")
        # Report refusals keep the report's shape with an empty list.
        if not first_raw or not last_raw:
            return Response.json(200, _envelope(-26, invoiceList=[]))  # ASSUMPTION 13
        try:
            if not (ISO_DATE.fullmatch(str(first_raw)) and ISO_DATE.fullmatch(str(last_raw))):
                raise ValueError("not yyyy-mm-dd")
            first = dt.date.fromisoformat(str(first_raw))
            last = dt.date.fromisoformat(str(last_raw))
        except ValueError as exc:
            raise _Malformed("firstDate ve lastDate yyyy-mm-dd biçiminde olmalıdır.") from exc
        if last < first:
            raise _Malformed("lastDate, firstDate'ten önce olamaz.")
        if (last - first).days > MAX_REPORT_DAYS:
            return Response.json(200, _envelope(-9, invoiceList=[]))
        rows = [
            p
            for p in self.payments
            if first <= dt.date.fromisoformat(p["paymentDate"][:10]) <= last
        ]
        if not rows:
            return Response.json(200, _envelope(-11, invoiceList=[]))
        return Response.json(200, _envelope(1, invoiceList=rows))
