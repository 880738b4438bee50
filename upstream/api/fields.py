"""Input limits the API shares: a value that passes them fits the database and the clients.

Without them, a number beyond an integer column or a date-time before year 1 in UTC passed
validation and failed later, in the database or a time zone conversion, as a 500; for a push
that happened after the upstream had already accepted the change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import models
from django.db.backends.base.operations import BaseDatabaseOperations
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

_RANGES = BaseDatabaseOperations.integer_field_ranges

# The widest UTC offset PostgreSQL stores ("time zone displacement out of range" beyond it);
# Python takes up to ±23:59, so "+20:00" passed validation and failed in the database.
MAX_UTC_OFFSET = timedelta(hours=15, minutes=59)


def offset_in_range(value: datetime) -> bool:
    """Is `value` naive, or aware with an offset every database holds (at most ±15:59)?"""
    offset = value.utcoffset()
    return offset is None or abs(offset) <= MAX_UTC_OFFSET


def integer_range(field: models.Field) -> tuple[int, int]:
    """An integer column's range, the same on every database (SQLite would take more)."""
    return _RANGES.get(field.get_internal_type(), _RANGES["BigIntegerField"])


def column_max(model: type[models.Model], field_name: str) -> int:
    """The largest value the column `model.field_name` holds (`pk` for the primary key)."""
    meta = model._meta
    return integer_range(meta.pk if field_name == "pk" else meta.get_field(field_name))[1]


class DateTimeField(serializers.DateTimeField):
    """DRF's DateTimeField, refusing a moment that does not exist in UTC, and an offset beyond
    ±15:59 (`MAX_UTC_OFFSET`).

    "0001-01-01T00:00:00" in Istanbul is year 0 in UTC: DRF's own checks, the database
    adapters and the clients raise OverflowError on it. It gets DRF's "out of range" message.
    """

    default_error_messages = {
        "offset": _("Time zone offset out of range: it must be between -15:59 and +15:59.")
    }

    def enforce_timezone(self, value: Any) -> Any:
        if isinstance(value, datetime) and not offset_in_range(value):
            self.fail("offset")
        try:
            value = super().enforce_timezone(value)
            if value.tzinfo is not None:
                value.astimezone(UTC)
        except OverflowError:
            self.fail("overflow")
        return value
