"""The API's list filters: a bad value in the query string is a 400 that names the parameter.

Settings' REST_FRAMEWORK uses FilterBackend, so `filterset_fields` get FilterSet below; an
explicit FilterSet in an app's api.py subclasses it too. django-filter already turns an invalid
form into a 400; added here: date-times that passed the form and then failed in a time zone
conversion (a 500), and integer filters that take only whole numbers their column can hold.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django import forms
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_filters import fields as filter_fields
from django_filters import rest_framework as filters
from django_filters.rest_framework.filterset import FILTER_FOR_DBFIELD_DEFAULTS

from upstream.api.fields import integer_range, offset_in_range


class IsoDateTimeField(filter_fields.IsoDateTimeField):
    """An ISO 8601 date-time that also exists in UTC, with an offset the database holds.

    "0001-01-01T00:00+03:00" is year 0 in UTC: SQLite's adapter and Django's time zone
    conversions raise OverflowError on it, so it is refused here like any invalid date. An
    offset beyond ±15:59 ("+20:00", which Python takes) made PostgreSQL fail: a 400 too.
    """

    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        if value is not None and not offset_in_range(value):
            raise forms.ValidationError(
                _("Time zone offset out of range: it must be between -15:59 and +15:59."),
                code="offset",
            )
        if value is not None:
            try:
                value.astimezone(UTC)
            except OverflowError:
                raise forms.ValidationError(
                    self.error_messages["invalid"], code="invalid"
                ) from None
        return value


class IsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = IsoDateTimeField


class IntegerFilter(filters.NumberFilter):
    """A whole number within the range of the column it filters, else a 400.

    django-filter's NumberFilter takes any decimal up to 1e50 ("1e5", "2.5", 10**40).
    """

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        low, high = integer_range(models.BigIntegerField())
        kwargs.setdefault("min_value", low)
        kwargs.setdefault("max_value", high)
        super().__init__(*args, **kwargs)

    def get_max_validator(self) -> None:
        return None  # max_value replaces NumberFilter's 1e50


def _column_limits(field: models.Field) -> dict[str, int]:
    low, high = integer_range(field)
    return {"min_value": low, "max_value": high}


FILTER_DEFAULTS = {
    **{
        field_class: (
            {"filter_class": IntegerFilter, "extra": _column_limits}
            if issubclass(field_class, (models.IntegerField, models.AutoField))
            else spec
        )
        for field_class, spec in FILTER_FOR_DBFIELD_DEFAULTS.items()
    },
    models.DateTimeField: {"filter_class": IsoDateTimeFilter},
}


class FilterSet(filters.FilterSet):
    FILTER_DEFAULTS = FILTER_DEFAULTS


class FilterBackend(filters.DjangoFilterBackend):
    filterset_base = FilterSet
