"""Texts stored for later readers: kept as their message id and parameters, shown in the
language of whoever reads them, not of whoever created them.

A job's title is written when the job is created, in the creator's language; an English reader of
a Turkish operator's job read Turkish. `text()` returns the rendered string (for the stored
column, the search and old clients) that also carries its message id and parameters; `to_json()`
keeps those and `render()` translates them again for each reader.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.apps import apps
from django.core.exceptions import ObjectDoesNotExist
from django.utils.functional import Promise
from django.utils.translation import gettext


class Text(str):
    """A rendered message that remembers how to render itself again."""

    msgid: str
    params: dict[str, Any]


class RecordParam(str):
    """A record named in a stored text: kept as its model label and id, with the masked name
    for readers (and old rows) that cannot see it. Rendered from the record as the reader may
    see it (security.personal masks it on load for readers without the permission)."""

    label: str
    pk: Any


def record_param(record: Any, masked: str) -> RecordParam:
    param = RecordParam(masked)
    param.label, param.pk = record._meta.label_lower, record.pk
    return param


def _live(data: dict[str, Any]) -> str:
    try:
        model = apps.get_model(data["record"])
        return str(model._default_manager.get(pk=data["pk"]))
    except (LookupError, ValueError, ObjectDoesNotExist):
        # Gone from the mirror (or an unknown model): the name as it was stored, masked.
        return data.get("masked", "")


def _param(value: Any) -> Any:
    # A lazy label (a TextChoices label, a verbose name) is kept by its message id.
    if isinstance(value, Promise) and getattr(value, "_args", None):
        return {"msgid": str(value._args[0])}
    if isinstance(value, RecordParam):
        return {"record": value.label, "pk": value.pk, "masked": str(value)}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return str(value)
    # A Text, or an error whose str() is one (upstream.calls.errors keep their message as given).
    rendered = value if isinstance(value, str) else str(value)
    if isinstance(rendered, Text):
        return to_json(rendered)
    return str(rendered)


def text(msgid: str, **params: Any) -> Text:
    """`gettext(msgid) % params` now, keeping the message id and parameters for later readers.

    Mark the msgid with `gettext_noop` at the call site, so `make messages` finds it.
    """
    data = {"msgid": msgid, "params": {k: _param(v) for k, v in params.items()}}
    # The stored column (read by everyone, searched) keeps the masked name.
    rendered = Text(render(data, live=False))
    rendered.msgid, rendered.params = data["msgid"], data["params"]
    return rendered


def to_json(value: Any) -> dict[str, Any]:
    """What to store beside the rendered text: {} for a plain string (an older caller's)."""
    if isinstance(value, Text):
        return {"msgid": value.msgid, "params": value.params}
    return {}


def message_fields(message: Any) -> dict[str, Any]:
    """A job item's `message` and `message_text` for an update (upstream.models.JobItem)."""
    return {"message": str(message), "message_text": to_json(message)}


def render(data: dict[str, Any] | None, fallback: str = "", *, live: bool = True) -> str:
    """The stored message in the active language; `fallback` when there is none (old rows).
    A record it names is read now (`live`), as the reader may see it, else as stored."""
    if not data or "msgid" not in data:
        return fallback
    params = {
        key: (
            (_live(value) if live else value.get("masked", ""))
            if "record" in value
            else render(value, "", live=live)
        )
        if isinstance(value, dict)
        else value
        for key, value in (data.get("params") or {}).items()
    }
    try:
        return gettext(data["msgid"]) % params if params else gettext(data["msgid"])
    except (KeyError, TypeError, ValueError):
        # A translation that lost a placeholder must not break a page: the stored text.
        return fallback or data["msgid"]
