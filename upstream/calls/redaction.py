"""The one list of what never reaches the call log as it was sent: secrets and personal data.

- **Secrets** (keys, tokens, passwords) are replaced by "***" in headers, bodies and URLs.
- **Personal data** of the upstreams' customers (names, e-mails, phone numbers, TC identity and
  tax numbers, street addresses) is masked: enough stays to tell two records apart and to match
  a call to a record ("Ze*** Ka**", "z***@example.com", "532***4567"), never enough to read the
  value. The fields are those the three upstreams' contracts show (PERSONAL_FIELDS below).

`redact_body` is what the call log stores: a JSON body masked field by field, a body too long
for the log masked before it is cut, a body that is not JSON (form-encoded, text, HTML) masked
by pattern. The admin and the API mask again what they show, so a row stored before a field
joined the list is not shown in clear either. The mirror tables keep what staff need; who may
see their personal columns unmasked is the `security.view_personal_data` permission
(security/personal.py, docs/decisions/011-personal-data.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "***"
# Compared case-insensitively, with "-" and "_" ignored: Authorization, Apikey, ApiKey, SecretKey.
SECRET_NAMES = frozenset(
    {
        "authorization",
        "apikey",
        "secretkey",
        "password",
        "token",
        "secret",
        "cookie",
        "xapikey",
        # WiseCP's formal invoice PDF: its unguessable address is all that guards the customer's
        # name, address and tax number in it.
        "formalizefile",
    }
)
# How much of a body the call log keeps (characters of its JSON text).
MAX_BODY_CHARS = 20_000


class Kind(StrEnum):
    NAME = "name"
    EMAIL = "email"
    PHONE = "phone"
    IDENTITY = "identity"
    ADDRESS = "address"


# Personal fields of the upstreams' customers, by key, wherever they appear in a body (compared
# like SECRET_NAMES: case-insensitively, "-" and "_" ignored).
PERSONAL_FIELDS: dict[str, Kind] = {
    # Paynet: a subscription's end user (subscription_detail, subscription/list).
    "name_surname": Kind.NAME,
    "end_user_email": Kind.EMAIL,
    "end_user_gsm": Kind.PHONE,
    # WiseCP: an invoice's customer (GetInvoice, GetInvoices, UpdateInvoice's `user`).
    "name": Kind.NAME,
    "surname": Kind.NAME,
    "full_name": Kind.NAME,
    "email": Kind.EMAIL,
    "phone": Kind.PHONE,
    "identity": Kind.IDENTITY,
    "company_tax_number": Kind.IDENTITY,
    "address": Kind.ADDRESS,
    # Payofin: the bill's holder (masked by Payofin already; masked here whatever it sends).
    "customerName": Kind.NAME,
    # Other spellings of the same data, should an upstream or a version use them.
    "gsm": Kind.PHONE,
    "mobile": Kind.PHONE,
    "phone_number": Kind.PHONE,
    "e_mail": Kind.EMAIL,
    "customer_name": Kind.NAME,
    "tckn": Kind.IDENTITY,
    "tc_kimlik_no": Kind.IDENTITY,
    "identity_number": Kind.IDENTITY,
}
# Inside an address: the parts that find a door; the city, district and country stay.
ADDRESS_PARTS = frozenset({"detail", "zipcode", "zip", "postcode", "postalcode", "street", "line1"})

# The mirror's personal columns (names, e-mails, phones) are registered by each vertical with
# its models (upstream.registry.register_mirrored) and masked by security/personal.py.


@lru_cache(maxsize=4096)
def _key(name: str) -> str:
    # A form or query key names its field last: "filter[email]", "user[phone]". Cached: a
    # sync's bodies repeat the same few dozen keys some hundred thousand times.
    if name.endswith("]") and "[" in name:
        name = name[:-1].rpartition("[")[2]
    return name.replace("-", "").replace("_", "").lower()


_PERSONAL = {_key(name): kind for name, kind in PERSONAL_FIELDS.items()}
_ADDRESS_PARTS = frozenset(_key(name) for name in ADDRESS_PARTS)


def _is_secret(name: str) -> bool:
    return _key(name) in SECRET_NAMES


def personal_kind(name: str) -> Kind | None:
    """The kind of personal data a body key holds, or None."""
    return _PERSONAL.get(_key(name))


# Masks -------------------------------------------------------------------------------------


def mask_name(value: str) -> str:
    """ "Zeynep Kaya" -> "Ze*** Ka**": the first letters of each word, at most three stars."""
    words = []
    for word in str(value).split():
        keep = 2 if len(word) > 3 else 1
        if len(word) == 1:
            words.append("*")
        else:
            words.append(word[:keep] + "*" * min(len(word) - keep, 3))
    return " ".join(words)


def mask_email(value: str) -> str:
    """ "zeynep.kaya@example.com" -> "z***@example.com"."""
    local, at, domain = str(value).strip().rpartition("@")
    if not at or not local:
        return REDACTED
    return f"{local[0]}{REDACTED}@{domain}"


def mask_phone(value: Any) -> str:
    """ "5321234567" -> "532***4567", "+90 532 123 45 67" -> "905***4567"."""
    digits = re.sub(r"\D", "", str(value))
    if len(digits) >= 7:
        return f"{digits[:3]}{REDACTED}{digits[-4:]}"
    return REDACTED + digits[-2:] if len(digits) > 2 else REDACTED


def mask_identity(value: Any) -> str:
    """A TC identity or tax number: "12345678950" -> "***50"."""
    digits = re.sub(r"\D", "", str(value))
    return REDACTED + digits[-2:] if len(digits) > 4 else REDACTED


def _mask_address(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (
                mask_value(Kind.ADDRESS, v)
                if _key(str(k)) in _ADDRESS_PARTS
                else redact(v)
                if isinstance(v, Mapping | list)
                else v
            )
            for k, v in value.items()
        }
    return REDACTED


_MASKS: dict[Kind, Callable[[Any], Any]] = {
    Kind.NAME: mask_name,
    Kind.EMAIL: mask_email,
    Kind.PHONE: mask_phone,
    Kind.IDENTITY: mask_identity,
    Kind.ADDRESS: lambda value: REDACTED,
}


def mask_value(kind: Kind, value: Any) -> Any:
    """`value` masked as `kind`; empty values (None, "", 0) and booleans stay as they are."""
    if value is None or value == "" or isinstance(value, bool):
        return value
    if kind == Kind.ADDRESS:
        return _mask_address(value)
    if isinstance(value, list | tuple):
        return [mask_value(kind, v) for v in value]
    if isinstance(value, Mapping):
        return {k: mask_value(kind, v) for k, v in value.items()}
    if isinstance(value, int | float) and not value:
        return value
    return _MASKS[kind](value)


# Structured bodies ---------------------------------------------------------------------------


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if _is_secret(k) else v) for k, v in headers.items()}


_PLAIN_LEAVES = frozenset({int, float, bool, type(None)})


@lru_cache(maxsize=4096)
def _key_rule(name: str) -> tuple[bool, Kind | None]:
    """(secret, personal kind) of a body key, asked once per key name: a sync's bodies repeat
    the same few dozen keys some hundred thousand times."""
    return _is_secret(name), personal_kind(name)


def redact(data: Any) -> Any:
    """A copy of a JSON-like value with every secret-named key's value replaced and every
    personal field masked; e-mail addresses inside other texts are masked too."""
    kind_of = type(data)
    if kind_of in _PLAIN_LEAVES:
        return data  # the leaves of most bodies, told apart without the ABCs' checks
    if kind_of is str:
        return _redact_text_leaf(data)
    if kind_of is dict or isinstance(data, Mapping):
        out = {}
        for k, v in data.items():
            secret, kind = _key_rule(k if type(k) is str else str(k))
            if secret:
                out[k] = REDACTED
            elif kind is not None:
                out[k] = mask_value(kind, v)
            elif type(v) in _PLAIN_LEAVES:
                out[k] = v
            elif type(v) is str:
                out[k] = _redact_text_leaf(v)
            else:
                out[k] = redact(v)
        return out
    if isinstance(data, list | tuple):
        return [redact(v) for v in data]
    if isinstance(data, str):
        return _redact_text_leaf(data)
    return data


def _redact_text_leaf(data: str) -> str:
    # Free text is masked as in a text body: the same note masked whatever the body's form,
    # and a link's query (WiseCP's share link carries a token) by its keys.
    return _mask_free_text(_FORM_PAIR.sub(_form_pair, data) if "=" in data else data)


# Text bodies ---------------------------------------------------------------------------------

# Starting where a run of address characters starts: linear on long texts.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# "key": value in JSON-like text; the value may be cut off by truncation.
_JSON_PAIR = re.compile(
    r'"(?P<key>[^"\\]{1,64})"(?P<sep>\s*:\s*)'
    r'(?P<value>"(?:[^"\\]|\\.)*"?|\{[^{}]*\}?|[^,{}\[\]\s"]+)'
)
# key=value in form-encoded bodies and query strings (`user[email]=`, `user%5Bemail%5D=` too).
_FORM_PAIR = re.compile(r"""(?P<key>(?<![\w%\]])[\w%.\[\]-]{1,64})=(?P<value>[^&\s;"'<>]*)""")
# A TC identity number (checked by its two check digits below) and a Turkish mobile number.
_TC_IDENTITY = re.compile(r"(?<!\d)[1-9]\d{10}(?!\d)")
_TR_MOBILE = re.compile(
    r"(?<![\d+])(?:(?:\+90|0090|90|0)[\s-]?)?\(?5\d{2}\)?[\s-]?\d{3}[\s-]?\d{2}[\s-]?\d{2}(?!\d)"
)


def is_tc_identity(number: str) -> bool:
    """The checksum of a Turkish identity number (11 digits, not starting with 0)."""
    if len(number) != 11 or not number.isdigit() or number[0] == "0":
        return False
    d = [int(c) for c in number]
    tenth = ((d[0] + d[2] + d[4] + d[6] + d[8]) * 7 - (d[1] + d[3] + d[5] + d[7])) % 10
    return tenth == d[9] and sum(d[:10]) % 10 == d[10]


def _last_key(raw: str) -> str:
    """The field a form key names: "user[email]" -> "email", "user%5Bphone%5D" -> "phone"."""
    key = unquote_plus(raw)
    return key.rstrip("]").rpartition("[")[2] if key.endswith("]") else key


def _masked_text_value(kind: Kind | None, raw: str) -> str:
    """A JSON value as written in text, masked, still written as JSON text."""
    if raw.startswith("{"):
        if kind == Kind.ADDRESS:
            return _JSON_PAIR.sub(_address_part, raw)
        return REDACTED
    quoted = raw.startswith('"')
    closed = quoted and len(raw) > 1 and raw.endswith('"')
    text = raw[1:-1] if closed else raw[1:] if quoted else raw
    if text in ("", "null", "true", "false"):
        return raw
    masked = REDACTED if kind is None else str(mask_value(kind, text))
    return f'"{masked}"' if quoted else masked


def _address_part(match: re.Match) -> str:
    if _key(match["key"]) not in _ADDRESS_PARTS:
        return match.group(0)
    return f'"{match["key"]}"{match["sep"]}{_masked_text_value(Kind.ADDRESS, match["value"])}'


def _json_pair(match: re.Match) -> str:
    key, value = match["key"], match["value"]
    kind = personal_kind(key)
    if _is_secret(key):
        return f'"{key}"{match["sep"]}' + ('"***"' if value.startswith('"') else REDACTED)
    if kind is None:
        if value.startswith("{"):
            # An object of other fields: its own pairs are looked at one by one.
            return f'"{key}"{match["sep"]}{_JSON_PAIR.sub(_json_pair, value)}'
        return match.group(0)
    return f'"{key}"{match["sep"]}{_masked_text_value(kind, value)}'


def _form_pair(match: re.Match) -> str:
    name = _last_key(match["key"])
    value = unquote_plus(match["value"])
    if _is_secret(name):
        return f"{match['key']}={REDACTED}"
    kind = personal_kind(name)
    if kind is None or not value:
        return match.group(0)
    return f"{match['key']}={mask_value(kind, value)}"


def redact_text(text: str) -> str:
    """A body that is not JSON, or JSON cut off, with secrets and personal data masked: JSON
    pairs and form fields by their key, e-mail addresses, TC identity numbers and Turkish mobile
    numbers wherever they are."""
    text = _JSON_PAIR.sub(_json_pair, text)
    text = _FORM_PAIR.sub(_form_pair, text)
    return _mask_free_text(text)


def _mask_free_text(text: str) -> str:
    """E-mail addresses, TC identity numbers and Turkish mobile numbers anywhere in `text`."""
    if "@" in text:
        text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    if len(text) < 10:
        return text  # too short for ten digits: no identity or mobile number (most leaves)
    text = _TC_IDENTITY.sub(
        lambda m: mask_identity(m.group(0)) if is_tc_identity(m.group(0)) else m.group(0), text
    )
    return _TR_MOBILE.sub(lambda m: mask_phone(m.group(0)), text)


def redact_body(body: Any, *, limit: int = MAX_BODY_CHARS) -> Any:
    """What the call log keeps of a request or response body: JSON masked field by field (a
    long one masked first, then cut to `limit` characters of its text), anything else masked as
    text. A string that holds JSON is read as JSON."""
    if body is None:
        return None
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body) if body.strip() else None
        except ValueError:
            # Masked with a margin before the cut, so a value the cut splits is masked whole.
            return redact_text(body[: limit + 1000])[:limit]
        if not isinstance(parsed, dict | list):
            return redact_text(body[: limit + 1000])[:limit]
        body = parsed
    masked = redact(body)
    if isinstance(masked, dict | list):
        # Measured compact, as upstreams send it; a body kept as text reads with spaces.
        compact = json.dumps(masked, ensure_ascii=False, default=str, separators=(",", ":"))
        if len(compact) > limit:
            return json.dumps(masked, ensure_ascii=False, default=str)[:limit]
    return masked


def redact_shown(value: Any) -> Any:
    """A stored body as the admin and the API show it: masked again (rows written before a
    field joined the lists)."""
    if isinstance(value, str):
        return redact_text(value)
    return redact(value)
