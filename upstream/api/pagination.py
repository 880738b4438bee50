"""The API's lists: page numbers by default, a cursor for clients that read a list to its end.

- `?page=N&page_size=M` (DRF's PageNumberPagination): `count` is exact unless counting a long list
  would be slow (upstream.lists.counting); a page in the second half of a list is read from its
  other end, so the last page costs what the first costs.
- `?cursor=` (empty: the first page), then the `next` / `previous` links it answers: DRF's
  CursorPagination, in the list's own order. Each page seeks from where the last one ended
  (`WHERE key < last key ORDER BY key LIMIT M`), so page 20,000 of an export costs what page 1
  costs, and rows written meanwhile neither repeat nor are skipped. No `count` (that would count
  the whole list on every page).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination, CursorPagination, PageNumberPagination
from rest_framework.response import Response

from upstream.lists.counting import EstimatedCountPaginator, order_name, ordering_of, total_order

MAX_PAGE_SIZE = 500
CURSOR_PARAM = "cursor"


class Cursor(CursorPagination):
    """CursorPagination in the order the view's queryset already has (which its indexes serve),
    by plain columns: a relation is compared by the key it holds."""

    cursor_query_param = CURSOR_PARAM
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    ordering = ("-pk",)

    def get_ordering(self, request, queryset: QuerySet, view) -> tuple[str, ...]:
        ordering = []
        for order in ordering_of(queryset):
            name = order_name(order)
            if not isinstance(order, str) or name is None or "__" in name:
                return self.ordering  # an expression: the primary key, newest first
            descending = order.startswith("-")
            if name != "pk":
                field = queryset.model._meta.get_field(name)
                if field.is_relation:
                    # "job" orders by the job's own ordering; the cursor compares job_id.
                    name = field.attname
            ordering.append(f"-{name}" if descending else name)
        if not ordering or not total_order(queryset.order_by(*ordering)):
            # Without a unique key at its end an order would put ties on either side of a
            # cursor: the primary key breaks them.
            last = "-pk" if ordering and ordering[0].startswith("-") else "pk"
            ordering.append(last)
        return tuple(ordering)


class Pagination(PageNumberPagination):
    """Page numbers, as DRF's; `count` is exact unless counting a long list would be slow.

    On PostgreSQL a list whose COUNT(*) would exceed settings.LIST_COUNT_BUDGET (an unfiltered
    call log of a million rows) gives the planner's estimate, rounded, as `count`, with
    `count_is_estimate: true`; `next` is exact either way (upstream.lists.counting).
    With `?cursor=` the list pages by cursor instead (see the module docstring).
    """

    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    django_paginator_class = EstimatedCountPaginator
    cursor: BasePagination | None = None

    def paginate_queryset(self, queryset, request, view=None):
        if CURSOR_PARAM in request.query_params and isinstance(queryset, QuerySet):
            self.cursor = Cursor()
            return self.cursor.paginate_queryset(queryset, request, view)
        return super().paginate_queryset(queryset, request, view)

    def get_page_number(self, request, paginator):
        """A `page` that is no whole number from 1 up is bad input (400), not DRF's 404; a page
        past the last one stays a 404. A bad `page_size` falls back to the default, as in DRF."""
        page_number = super().get_page_number(request, paginator)
        if page_number in self.last_page_strings:
            return page_number
        try:
            number = int(page_number)
        except (TypeError, ValueError):
            raise ValidationError({"page": [paginator.error_messages["invalid_page"]]}) from None
        if number < 1:
            raise ValidationError({"page": [paginator.error_messages["min_page"]]})
        return number

    def get_paginated_response(self, data):
        if self.cursor is not None:
            return self.cursor.get_paginated_response(data)
        paginator = self.page.paginator
        return Response(
            {
                "count": paginator.count,
                "count_is_estimate": paginator.count_is_estimate,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        response = super().get_paginated_response_schema(schema)
        response["required"] = [*response["required"], "count_is_estimate"]
        response["properties"]["count_is_estimate"] = {
            "type": "boolean",
            "example": False,
            "description": "True when `count` is PostgreSQL's estimate: counting exactly would "
            "have been slow. `next` is exact either way. Absent with `cursor`.",
        }
        return response

    def get_schema_operation_parameters(self, view) -> list[dict[str, Any]]:
        return [
            *super().get_schema_operation_parameters(view),
            {
                "name": CURSOR_PARAM,
                "required": False,
                "in": "query",
                "description": "Page by cursor instead of page number: empty for the first "
                "page, then follow `next`. Each page costs the same however deep; the answer "
                "has `next`, `previous` and `results`, no `count`.",
                "schema": {"type": "string"},
            },
        ]
