"""The API's list filters: a bad value in the query string is a 400 that names the parameter.

Settings' REST_FRAMEWORK uses FilterBackend, so `filterset_fields` get FilterSet below; an
explicit FilterSet in an app's api.py subclasses it too. django-filter already turns an invalid
form into a 400; what is added here are the values that used to pass the form and then fail
in the database or in Django's conversions (a 500).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django import forms
from django.db import connection, models
from django_filters import fields as filter_fields
from django_filters import rest_framework as filters
from django_filters.rest_framework.filterset import FILTER_FOR_DBFIELD_DEFAULTS


class IsoDateTimeField(filter_fields.IsoDateTimeField):
    """An ISO 8601 date-time that also exists in UTC.

    "0001-01-01T00:00+03:00" is year 0 in UTC: SQLite's adapter and Django's time zone
    conversions raise OverflowError on it, so it is refused here like any invalid date.
    """

    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
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
    """A whole number within the range of the column it filters (the database's limits).

    django-filter's NumberFilter takes any decimal up to 1e50, which PostgreSQL cannot compare
    with an integer column and which is no id anyway.
    """

    field_class = forms.IntegerField

    def __init__(self, *args: Any, column_type: str = "BigIntegerField", **kwargs: Any) -> None:
        self.column_type = column_type
        super().__init__(*args, **kwargs)

    def get_max_validator(self) -> None:
        return None  # the range below replaces NumberFilter's 1e50

    @property
    def field(self) -> forms.Field:
        if not hasattr(self, "_field"):
            low, high = connection.ops.integer_field_range(self.column_type)
            self.extra.setdefault("min_value", low)
            self.extra.setdefault("max_value", high)
        return super().field


def _integer_filter(field: models.Field) -> dict[str, Any]:
    return {"column_type": field.get_internal_type()}


FILTER_DEFAULTS = {
    **{
        field_class: (
            {"filter_class": IntegerFilter, "extra": _integer_filter}
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
