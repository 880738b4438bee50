"""Counting a list without counting a million rows (the admin's changelists and the API's lists).

A page of a list shows its rows and how many there are. The rows are cheap with the right index;
the count is not: COUNT(*) reads every matching row, 40-100 ms per page on a million rows in
PostgreSQL. So a total is exact while it is cheap and PostgreSQL's estimate when it is not:

- On PostgreSQL the planner is asked first: pg_class.reltuples (and relpages) for a whole table,
  EXPLAIN for a filtered list, say how many rows there are and what reading them all would cost.
  Within `settings.LIST_COUNT_BUDGET` (planner cost units) the list is counted; above it the
  estimate, rounded to two significant digits, is the total and the paginator's
  `count_is_estimate` is True. Staff read "about 1,000,000".
- Elsewhere (SQLite: development and tests) every count is exact.

A search is counted up to a cap instead ("more than 10,000"): the planner's guesses for
substrings are wrong by orders of magnitude, and counting stops at the cap.

Where an estimated list ends is never taken from the estimate: a page reads one row more than it
shows, so "next" is always right, and a page that comes back short makes the total exact. In the
admin (`past_end_is_last`) a page number past the real end, an estimate's link that overshot it
or an old bookmark, shows the last page (counted exactly first) instead of Django's redirect to
the unfiltered list with "?e=1"; the API keeps its 404 past the pages its `count` offered.

Deep pages (decision 019). OFFSET skips rows one by one, so page 20,000 of a million rows used to
cost 10-20 times page 1. A page in the second half of a list whose order is total (it ends in a
unique key) is read from the other end: the order reversed, OFFSET counted from the end, the rows
reversed in Python; the last page costs what the first costs. An estimated total is counted
exactly first (one index-only count, cheaper than the walk, and the page must be where its
number says). A deep page in the first half reads its ids first, from the ordering's index, then
its own rows. The API's cursor pages (upstream.api.pagination) seek instead of skipping at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet, FieldDoesNotExist
from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db import connections, transaction
from django.db.models import QuerySet
from django.utils.functional import cached_property


@dataclass(frozen=True)
class Estimate:
    rows: int
    # What PostgreSQL expects reading them all to cost, in its planner's units (about one per
    # page read): what a COUNT(*) of the list would cost.
    cost: float


# PostgreSQL's defaults for seq_page_cost and cpu_tuple_cost: a whole-table count reads every
# page and looks at every row.
_PAGE_COST, _ROW_COST = 1.0, 0.01


def planner_estimate(queryset: QuerySet) -> Estimate | None:
    """PostgreSQL's guess of how many rows `queryset` has and what counting them would cost,
    without reading them; None on other databases."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    query = queryset.query
    with connection.cursor() as cursor:
        if not query.where and not query.distinct and not query.combinator:
            # The whole table: what the last VACUUM or ANALYZE counted (-1: it never ran).
            table = connection.ops.quote_name(queryset.model._meta.db_table)
            cursor.execute(
                "SELECT reltuples::bigint, relpages FROM pg_class WHERE oid = %s::regclass",
                [table],
            )
            rows, pages = cursor.fetchone()
            if rows >= 0:
                return Estimate(rows, pages * _PAGE_COST + rows * _ROW_COST)
        try:
            sql, params = queryset.order_by().values("pk").query.sql_with_params()
        except EmptyResultSet:  # e.g. .none(): nothing to ask the planner about
            return Estimate(0, 0.0)
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        (plan,) = cursor.fetchone()
    if isinstance(plan, str):
        plan = json.loads(plan)
    top = plan[0]["Plan"]
    return Estimate(int(top["Plan Rows"]), float(top["Total Cost"]))


# From this row on, a page reads its ids first (see EstimatedCountPaginator._rows).
DEEP_OFFSET = 1000


@contextmanager
def walking(using: str) -> Iterator[None]:
    """Queries in the block find their rows by walking the index of their ORDER BY, on
    PostgreSQL: no bitmap scan of another index (a trigram index finding 250,000 rows for a
    common word, then all of them sorted for a page of 50) and no sequential scan.

    The planner cannot tell how common a word is; the caller can (it counted the matches up
    to a cap). Within a transaction (a savepoint inside the request's), and set back after.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute("SET LOCAL enable_seqscan = off")
        try:
            yield
        finally:
            cursor.execute("SET LOCAL enable_bitmapscan TO DEFAULT")
            cursor.execute("SET LOCAL enable_seqscan TO DEFAULT")


def rounded(estimate: int) -> int:
    """Two significant digits: an estimate should not look exact (1,003,457 -> 1,000,000)."""
    digits = len(str(estimate)) - 2
    return round(estimate, -digits) if digits > 0 else estimate


def ordering_of(queryset: QuerySet) -> list[Any]:
    """What `queryset` is ordered by (its Meta.ordering unless it says otherwise)."""
    query = queryset.query
    if query.order_by:
        return list(query.order_by)
    return list(queryset.model._meta.ordering) if query.default_ordering else []


def order_name(order: Any) -> str | None:
    """The field an ordering term names ("-created_at" -> "created_at"), None for expressions."""
    if isinstance(order, str):
        return order.removeprefix("-").removeprefix("+")
    expression = getattr(order, "expression", None)  # OrderBy(F("x"))
    return getattr(expression, "name", None)


def total_order(queryset: QuerySet) -> bool:
    """Whether `queryset`'s order leaves no ties (a unique column or unique set of columns is in
    it), so that reading it backwards gives the same rows in the opposite order."""
    if queryset.query.distinct or queryset.query.combinator:
        return False
    model = queryset.model
    names = {order_name(order) for order in ordering_of(queryset)}
    names.discard(None)
    if "?" in names:
        return False
    columns = set()
    for name in names:
        if name == "pk":
            return True
        if "__" in name:
            continue
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:  # an annotation: not a key of the list
            field = None
        if field is None:
            continue
        if field.primary_key or field.unique:
            return True
        columns.add(field.name)
    return any(
        set(constraint.fields) <= columns for constraint in model._meta.total_unique_constraints
    )


class EstimatedCountPaginator(Paginator):
    """A Paginator whose `count` is an estimate when counting would read too many rows.

    With `count_cap` (a search: the planner cannot tell how many rows a substring matches, and
    guesses wrong by orders of magnitude) it counts up to that many rows instead; beyond them
    `count` is the cap and `count_is_lower_bound` says "more than".
    """

    count_is_estimate = False
    count_is_lower_bound = False

    def __init__(
        self,
        *args: Any,
        count_cap: int | None = None,
        counted: int | None = None,
        walk: bool = False,
        past_end_is_last: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.count_cap = count_cap
        # The capped count, when the caller has already counted up to count_cap + 1.
        self.counted = counted
        # Read pages walking the order's index (a common word's matches: see walking()).
        self.walk = walk
        # A page number past the real end gives the last page instead of EmptyPage (the admin:
        # Django would redirect to the unfiltered list with "?e=1"). The API keeps its 404.
        self.past_end_is_last = past_end_is_last

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if not isinstance(rows, QuerySet):
            return super().count
        if self.count_cap is not None:
            found = self.counted
            if found is None:
                found = rows.order_by().values("pk")[: self.count_cap + 1].count()
            if found <= self.count_cap:
                return found
            self.count_is_estimate = self.count_is_lower_bound = True
            return self.count_cap
        estimate = planner_estimate(rows)
        if estimate is not None and estimate.cost > settings.LIST_COUNT_BUDGET:
            self.count_is_estimate = True
            return rounded(estimate.rows)
        return super().count

    @property
    def estimated(self) -> bool:
        """Whether `count` is an estimate (counting first, if that is still to be decided)."""
        return self.count >= 0 and self.count_is_estimate

    def validate_number(self, number: Any) -> int:
        if not self.estimated:
            try:
                return super().validate_number(number)
            except EmptyPage:
                if not self.past_end_is_last or int(number) < 1:
                    raise
                return max(self.num_pages, 1)
        # The estimate may fall short of the real end: any whole number from 1 up may be a page.
        try:
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from None
        if number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        return number

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        if self.estimated and self._deep_from_the_end(bottom):
            # Past the middle of an estimated list (where its "last page" links point): the
            # total is counted exactly (one index-only count: cheaper than walking to the
            # page) so the page can be read from the other end. A page the estimate's links
            # offered that lies past the real end is the real last page.
            shown = self.num_pages
            self._settle(self.object_list.order_by().count(), estimate=False)
            if number > self.num_pages:
                if number > shown and not self.past_end_is_last:
                    raise EmptyPage(self.error_messages["no_results"])
                number = max(self.num_pages, 1)
                bottom = (number - 1) * self.per_page
        # The page given (a link past the real end gives the last one): the admin's page links
        # are drawn around it.
        self.served_number = number
        if not self.estimated:
            top = bottom + self.per_page
            if top + self.orphans >= self.count:
                top = self.count
            return self._get_page(self._rows(bottom, top), number, self)
        rows = self._rows(bottom, bottom + self.per_page + 1)
        if not rows and number > 1:
            if not self.past_end_is_last:
                raise EmptyPage(self.error_messages["no_results"])
            # Past the real end of an estimate that overshot it, in its first half (not read
            # from the other end): counted exactly, the real last page.
            self._settle(self.object_list.order_by().count(), estimate=False)
            return self.page(max(self.num_pages, 1))
        more = len(rows) > self.per_page
        rows = rows[: self.per_page]
        if not more:
            # This is the last page: now the total is known.
            self._settle(bottom + len(rows), estimate=False)
        elif bottom + len(rows) >= self.count:
            # More rows than estimated (or than the cap): at least one page more.
            self._settle(bottom + len(rows) + 1, estimate=True)
        return self._get_page(rows, number, self)

    def _rows(self, bottom: int, top: int) -> list[Any]:
        if self.walk:
            with walking(self.object_list.db):
                return self._read(bottom, top)
        return self._read(bottom, top)

    def _read(self, bottom: int, top: int) -> list[Any]:
        rows = self.object_list
        if bottom < DEEP_OFFSET or not isinstance(rows, QuerySet):
            return list(rows[bottom:top])
        if not self.count_is_estimate and self._deep_from_the_end(bottom):
            # Past the middle: the order reversed, the OFFSET counted from the end.
            total = self.count
            if bottom >= total:
                return []
            top = min(top, total)
            found = list(rows.reverse()[total - top : total - bottom])
            found.reverse()
            return found
        # A deep page: OFFSET skips its rows one by one. Skipping ids only lets PostgreSQL read
        # them from the ordering's index alone (an index-only scan); then only this page's rows.
        ids = list(rows.values_list("pk", flat=True)[bottom:top])
        found = rows.order_by().in_bulk(ids)
        return [found[pk] for pk in ids if pk in found]

    def _deep_from_the_end(self, bottom: int) -> bool:
        """Whether a page from row `bottom` is read from the list's other end: a deep page in
        the second half of a queryset in a total order. Not a search's capped count ("more
        than 10,000"): it says nothing of where the matches end."""
        rows = self.object_list
        return (
            bottom >= DEEP_OFFSET
            and isinstance(rows, QuerySet)
            and not self.count_is_lower_bound
            and bottom * 2 > self.count
            and total_order(rows)
        )

    def _settle(self, count: int, *, estimate: bool) -> None:
        self.__dict__["count"] = count
        self.__dict__.pop("num_pages", None)
        self.count_is_estimate = estimate
        self.count_is_lower_bound = self.count_is_lower_bound and estimate
