"""List filters the stock admin lacks: a date range, a free-text value, and choices from a
catalogue (the stock filter of a field without choices reads them with a SELECT DISTINCT over the
whole table: a million rows on every page of the call log)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, time

from django.contrib import admin, messages
from django.utils import formats, timezone
from django.utils.translation import gettext_lazy as _


def _parse_day(value: str):
    for fmt in formats.get_format("DATE_INPUT_FORMATS"):
        try:
            return datetime.strptime(value.strip(), fmt).date()
        except (ValueError, TypeError):
            continue
    return None


class DateRangeFilter(admin.FieldListFilter):
    """From/to inputs (dd.mm.yyyy) on a date or datetime field, both ends inclusive."""

    template = "admin/filters/date_range.html"

    def __init__(self, field, request, params, model, model_admin, field_path):
        self.param_from = f"{field_path}__range_from"
        self.param_to = f"{field_path}__range_to"
        super().__init__(field, request, params, model, model_admin, field_path)
        # The base class has already moved our parameters from params to used_parameters.
        self.value_from = self._take(self.used_parameters, self.param_from)
        self.value_to = self._take(self.used_parameters, self.param_to)
        self.invalid = False

    @staticmethod
    def _take(params, name: str) -> str:
        value = params.get(name, "")
        return (value[-1] if isinstance(value, list) else value) or ""

    def expected_parameters(self) -> list[str]:
        return [self.param_from, self.param_to]

    def has_output(self) -> bool:
        return True

    def _bound(self, request, value: str, end: bool):
        day = _parse_day(value) if value else None
        if value and day is None:
            # Django's answer to a bad filter is a redirect to the whole list with no word
            # ("?e=1"): say which date was not read, and filter by the other end only.
            messages.error(
                request,
                _(
                    "“%(value)s” is not a date (%(field)s): enter dates as dd.mm.yyyy. "
                    "The list is not filtered by it."
                )
                % {"value": value, "field": self.title},
            )
            self.invalid = True
            return None
        if day is None:
            return None
        if self.field.get_internal_type() == "DateTimeField":
            return timezone.make_aware(datetime.combine(day, time.max if end else time.min))
        return day

    def queryset(self, request, queryset):
        start = self._bound(request, self.value_from, False)
        end = self._bound(request, self.value_to, True)
        if start is not None:
            queryset = queryset.filter(**{f"{self.field_path}__gte": start})
        if end is not None:
            queryset = queryset.filter(**{f"{self.field_path}__lte": end})
        return queryset

    def choices(self, changelist):
        yield {
            "param_from": self.param_from,
            "param_to": self.param_to,
            "value_from": self.value_from,
            "value_to": self.value_to,
            "invalid": self.invalid,
            "other_params": [
                (k, v)
                for k, values in changelist.get_filters_params().items()
                if k not in (self.param_from, self.param_to)
                for v in (values if isinstance(values, list) else [values])
            ],
            "clear_url": changelist.get_query_string(remove=[self.param_from, self.param_to]),
        }


class InputFilter(admin.SimpleListFilter):
    """A text box: subclasses set parameter_name, title and filter_value()."""

    template = "admin/filters/input.html"

    def lookups(self, request, model_admin):
        return ((None, None),)

    def choices(self, changelist):
        yield {
            "value": self.value() or "",
            "parameter_name": self.parameter_name,
            "other_params": [
                (k, v)
                for k, values in changelist.get_filters_params().items()
                if k != self.parameter_name
                for v in (values if isinstance(values, list) else [values])
            ],
            "clear_url": changelist.get_query_string(remove=[self.parameter_name]),
        }

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        return self.filter_value(queryset, value) if value else queryset

    def filter_value(self, queryset, value: str):
        raise NotImplementedError


def catalogue_filter(
    parameter: str, title: str, choices: Callable[[], Iterable[tuple[str, str]]]
) -> type[admin.SimpleListFilter]:
    """A filter on `parameter` (a lookup such as "status__exact") offering `choices()`, which come
    from the code or a small table, never from the filtered table itself."""

    class CatalogueFilter(admin.SimpleListFilter):
        parameter_name = parameter

        def lookups(self, request, model_admin):
            return list(choices())

        def queryset(self, request, queryset):
            value = self.value()
            return queryset if value is None else queryset.filter(**{parameter: value})

    CatalogueFilter.title = title
    return CatalogueFilter
