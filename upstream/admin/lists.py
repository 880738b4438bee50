"""Changelists that stay fast on a million rows (ReadOnlyListAdmin has all of this).

- **The total.** EstimatedCountPaginator (upstream.lists.counting): exact while counting is cheap,
  PostgreSQL's estimate ("about 1,000,000") when it is not; a search counts up to 10,000 matches
  ("more than 10,000"). No second, unfiltered count (`show_full_result_count = False`) and no
  per-choice facet counts.
- **Sorting.** Only the columns in `sortable_by`, each backed by an index; a crafted `?o=` on
  another column is ignored. Django breaks ties with "-pk" whatever the direction; here the tie
  follows the column's direction, so one (column, id) index serves both.
- **Search.** `search_matches` says what the search box matches, and `search_help_text` tells
  staff: an exact value (a plain `=` on a b-tree index), a prefix (`LIKE 'x%'` on a pattern
  index) or words inside a text (`Folded(col) LIKE '%x%'`: Turkish case folded on every
  database, a trigram index on PostgreSQL). A match across a
  relation reads the related ids first, so the list is filtered on its own indexed columns and
  PostgreSQL can combine the indexes of every alternative instead of reading the whole list.
- **A common word** (decision 019). The matches are counted first, up to the cap, through the
  indexes (that is the list's total anyway). Up to the cap, the matches are sorted: a rare word
  costs what it finds. Over it, sorting would sort every match (250,000 for "hosting"), so the
  page is read walking the list's own index in its order, testing the word on each row
  (upstream.lists.counting.walking): a quarter of the rows matching, a page is found within a
  few hundred.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import reduce
from operator import and_, or_
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.views.main import ORDER_VAR, SEARCH_VAR, ChangeList
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import formats
from django.utils.translation import gettext as _

from upstream.api.fields import integer_range
from upstream.lists.counting import EstimatedCountPaginator, planner_estimate
from upstream.lists.fold import folded_contains, folded_equals

# Up to this many related ids are passed to the list's query as values (each alternative of the
# search then uses its own index, and the capped count stops early); with more, each row looks
# its related rows up (EXISTS), which fills a page quickly because so many rows match, but which
# PostgreSQL runs as a hashed subplan over the whole table for the count. 10,000 (not 1,000): a
# customer's surname ("Yılmaz": 3,000 subscriptions) stays on the index.
RELATED_IDS_MAX = 10_000
# A trigram index cannot narrow a search for one or two letters: shorter words are not searched.
MIN_WORD = 3
# A search's matches are counted up to this many; beyond, the list says "more than 10,000".
SEARCH_COUNT_MAX = 10_000
# A filter in `list_sort_filtered` is sorted up to this many rows (PostgreSQL's estimate).
SORT_FILTERED_MAX = 200_000
# The request attribute that tells the changelist to sort a search's matches (see Search).
SORT_MATCHES = "list_search_sorts_matches"
# The request attribute that holds how many matches the search counted (up to the cap + 1).
FOUND_MATCHES = "list_search_found"
# The request attribute that tells the paginator to read the page walking the list's order.
WALK_ORDER = "list_search_walks"


class How(StrEnum):
    EXACT = "exact"
    PREFIX = "prefix"
    CONTAINS = "contains"
    # The whole value, case-insensitively: a customer's name for staff who see it masked.
    WHOLE = "whole"


@dataclass(frozen=True)
class Match:
    """One thing the search box matches: `path` (may cross one relation) compared `how`."""

    path: str
    how: How = How.EXACT
    # Other spellings of the same value (e.g. WiseCP's invoice numbers with or without "#").
    spellings: Callable[[str], Iterable[str]] | None = None
    # A condition added to the match so that an index leading with another column serves it.
    within: Callable[[], Q] | None = None


def exact(
    path: str,
    spellings: Callable[[str], Iterable[str]] | None = None,
    within: Callable[[], Q] | None = None,
) -> Match:
    return Match(path, How.EXACT, spellings, within)


def prefix(path: str) -> Match:
    return Match(path, How.PREFIX)


def contains(path: str) -> Match:
    return Match(path, How.CONTAINS)


def _field(model: type[models.Model], path: str) -> models.Field:
    *relations, name = path.split("__")
    for relation in relations:
        model = model._meta.get_field(relation).related_model
    return model._meta.get_field(name)


def _exact_value(field: models.Field, raw: str) -> Any:
    """`raw` as the column's value, or None when no row can hold it (so it is not searched)."""
    target = getattr(field, "target_field", field)  # a foreign key compares as the key it holds
    try:
        value = target.to_python(raw)
    except ValidationError:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        low, high = integer_range(target)
        return value if low <= value <= high else None
    if isinstance(value, str) and target.max_length and len(value) > target.max_length:
        return None
    return value


def _match_q(model: type[models.Model], match: Match, path: str, term: str) -> Q | None:
    q = _compare(model, match, path, term)
    return q & match.within() if q is not None and match.within else q


def _compare(model: type[models.Model], match: Match, path: str, term: str) -> Q | None:
    if match.how == How.EXACT:
        raws = match.spellings(term) if match.spellings else (term,)
        field = _field(model, path)
        values = {v for v in (_exact_value(field, raw) for raw in raws) if v is not None}
        if not values:
            return None
        return Q(**{path: values.pop()}) if len(values) == 1 else Q(**{f"{path}__in": values})
    if match.how == How.PREFIX:
        return Q(**{f"{path}__startswith": term})
    # Text is compared folded (upstream.lists.fold): "özkan" finds "ÖZKAN", "ibrahim" "İbrahim",
    # on SQLite and PostgreSQL alike, through the trigram index built on the same fold.
    if match.how == How.WHOLE:
        return folded_equals(path, term, model)
    words = [word for word in term.split() if len(word) >= MIN_WORD]
    if not words:
        return None
    return reduce(and_, (folded_contains(path, word, model) for word in words))


def _through(model: type[models.Model], relation: str, related: Q) -> tuple[Q, bool]:
    """Rows of `model` whose `relation` matches `related`, on `model`'s own columns; and whether
    so many related rows match that the list is best walked in its order (see Search)."""
    field = model._meta.get_field(relation)
    if field.many_to_one:  # row.fk = related.pk
        key, outer = field.target_field.attname, field.attname
    elif field.one_to_many:  # related.fk = row.pk
        key, outer = field.field.attname, "pk"
    else:
        raise ValueError(f"search across {relation!r}: only foreign keys are supported")
    rows = field.related_model._default_manager.filter(related).order_by()
    ids = {i for i in rows.values_list(key, flat=True)[: RELATED_IDS_MAX + 1] if i is not None}
    if len(ids) <= RELATED_IDS_MAX:
        return Q(**{f"{outer}__in": sorted(ids)}), False
    # So many match that a page fills quickly: each row looks its own related rows up.
    return Q(Exists(rows.filter(**{key: OuterRef(outer)}))), True


@dataclass(frozen=True)
class Search:
    """What a search term matches: `q` (None: nothing can match), and whether the matches are
    to be sorted rather than found by walking the list's index in its order.

    PostgreSQL cannot tell how many rows a substring matches ("%302%": it guesses thousands).
    When it guesses many, it walks the list's index in order and tests each row, expecting a
    page soon; with three matches that reads the whole table. Sorting the matches costs what
    the trigram index finds, so a substring search on the list's own rows sorts them, unless
    a match across a relation found so many rows that walking is the better plan.
    """

    q: Q | None
    sort_matches: bool = False


def is_number(term: str) -> bool:
    """A term of digits ("388", "#388"): what staff type to reach a numbered record."""
    return term.removeprefix("#").isdigit()


def search_q(model: type[models.Model], matches: Sequence[Match], term: str) -> Search:
    """Rows matching `term` in any of `matches`.

    A number is compared with the exact matches only: "388" finds invoice #388, not the items
    whose description holds "E-2388G" (a bulk change on the search's result would reach them).
    """
    alternatives: list[Q] = []
    substring = walk = False
    related: dict[str, list[Q]] = {}
    number = is_number(term)
    for match in matches:
        if number and match.how in (How.CONTAINS, How.WHOLE):
            continue
        relation, _sep, rest = match.path.partition("__")
        if rest and model._meta.get_field(relation).is_relation:
            q = _match_q(model._meta.get_field(relation).related_model, match, rest, term)
            if q is not None:
                related.setdefault(relation, []).append(q)
        else:
            q = _match_q(model, match, match.path, term)
            if q is not None:
                alternatives.append(q)
                substring = substring or match.how in (How.CONTAINS, How.WHOLE)
    for relation, qs in related.items():
        q, many = _through(model, relation, reduce(or_, qs))
        alternatives.append(q)
        walk = walk or many
    if not alternatives:
        return Search(None)
    return Search(reduce(or_, alternatives), sort_matches=substring and not walk)


def searched(
    model: type[models.Model], matches: Sequence[Match], request: HttpRequest
) -> Sequence[Match]:
    """`matches` as `request`'s user may search them: without security.view_personal_data a
    customer's name is matched whole, since a part ("Zey", "Zeyn", ...) would spell out, one
    letter at a time, the name the list shows masked."""
    from security.personal import column_kind, sees_personal_data

    if sees_personal_data(request.user):
        return matches
    return tuple(
        Match(m.path, How.WHOLE) if m.how != How.EXACT and column_kind(model, m.path) else m
        for m in matches
    )


def _unindexed(order: Any) -> Any:
    """The same order, by an expression no index serves: COALESCE(col, col)."""
    name = order.removeprefix("-")
    expression = Coalesce(F(name), F(name))
    return expression.desc() if order.startswith("-") else expression.asc()


def any_record_type() -> Q:
    """`target_type` is one of ours: with the (target_type, target_id) index, PostgreSQL then
    looks a target id up once per type instead of reading every row."""
    return Q(target_type__in=sorted(model._meta.label_lower for model in apps.get_models()))


def _descending(order: Any) -> bool:
    if isinstance(order, str):
        return order.startswith("-")
    return bool(getattr(order, "descending", False))


class ScaledChangeList(ChangeList):
    def get_ordering_field(self, field_name: str) -> Any:
        # Only the columns offered for sorting, even from a hand-made ?o= parameter.
        if field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)

    def _sortable(self, param: str) -> bool:
        try:
            return self.list_display[int(param.rpartition("-")[2])] in self.sortable_by
        except (IndexError, ValueError):
            return False

    def get_ordering(self, request: HttpRequest, queryset: QuerySet) -> list[Any]:
        wanted = self.params.get(ORDER_VAR)
        if wanted and not any(self._sortable(p) for p in wanted.split(".")):
            self.params.pop(ORDER_VAR)  # nothing to sort by: the list's own order, not the pk
        ordering = super().get_ordering(request, queryset)
        if len(ordering) > 1 and ordering[-1] == "-pk" and not _descending(ordering[0]):
            ordering[-1] = "pk"
        return ordering

    def _sorts_filtered(self, request: HttpRequest, queryset: QuerySet) -> bool:
        """Whether a filter in `list_sort_filtered` narrows the list to few enough rows (counted
        up to the cap through the filter's own index) that sorting them beats walking the list's
        order: PostgreSQL guesses a date range's rows spread evenly along the list's order and
        walks it, discarding every row of the other months first."""
        fields = getattr(self.model_admin, "list_sort_filtered", ())
        if not fields or request.GET.get(SEARCH_VAR, "").strip() or self.params.get(ORDER_VAR):
            return False
        if not any(key.partition("__")[0] in fields for key in request.GET):
            return False
        count = queryset.order_by().values("pk")[: SEARCH_COUNT_MAX + 1].count()
        if count > SEARCH_COUNT_MAX:
            # More than the cap (a month of a million invoice items: 76,000): still sorted while
            # the planner expects at most SORT_FILTERED_MAX rows; the walk would read most of
            # the table to fill a page. The total is then the list's usual estimate.
            estimate = planner_estimate(queryset)
            return estimate is not None and estimate.rows <= SORT_FILTERED_MAX
        setattr(request, FOUND_MATCHES, count)  # the paginator's exact total
        return True

    def get_queryset(self, request: HttpRequest, exclude_parameters=None) -> QuerySet:
        queryset = super().get_queryset(request, exclude_parameters)
        if getattr(request, SORT_MATCHES, False) or self._sorts_filtered(request, queryset):
            ordering = list(queryset.query.order_by)
            if ordering and isinstance(ordering[0], str):
                queryset = queryset.order_by(_unindexed(ordering[0]), *ordering[1:])
        defer = getattr(self.model_admin, "list_defer", ())
        prefetch = getattr(self.model_admin, "list_prefetch_related", ())
        return queryset.defer(*defer).prefetch_related(*prefetch)

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # A last-page link of an estimate that lay past the real end was served the last page.
        self.page_num = getattr(self.paginator, "served_number", self.page_num)
        # Reading the page may have settled an estimated total (it was the last page).
        self.count_is_estimate = getattr(self.paginator, "count_is_estimate", False)
        self.count_is_lower_bound = getattr(self.paginator, "count_is_lower_bound", False)
        if self.result_count != self.paginator.count:
            self.result_count = self.paginator.count
            self.multi_page = self.result_count > self.list_per_page
            self.can_show_all = self.result_count <= self.list_max_show_all

    @property
    def count_text(self) -> str:
        """The total as staff read it: "1.234", "about 1.000.000", "more than 10.000"."""
        number = formats.number_format(self.result_count, force_grouping=True)
        if self.count_is_lower_bound:
            return _("more than %(count)s") % {"count": number}
        if self.count_is_estimate:
            return _("about %(count)s") % {"count": number}
        return number


class ScaledListMixin:
    """ModelAdmin defaults for lists that may hold millions of rows (see the module docstring)."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    # What the search box matches; without it, Django's `search_fields` apply (small tables).
    search_matches: tuple[Match, ...] = ()
    # Heavy columns the list never shows (e.g. JSON bodies), left out of the list's query.
    list_defer: tuple[str, ...] = ()
    # Related rows read for the page only, in one query, instead of joined before sorting (a
    # substring search sorts its matches: a join there would run for every match).
    list_prefetch_related: tuple[str, ...] = ()
    # Columns whose filter (a date range) may narrow the list to rows far apart in its order:
    # up to SEARCH_COUNT_MAX of them are sorted instead of walking the order (decision 019).
    list_sort_filtered: tuple[str, ...] = ()

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ScaledChangeList

    def get_paginator(
        self, request: HttpRequest, queryset: QuerySet, per_page: int, **kwargs: Any
    ) -> EstimatedCountPaginator:
        searching = bool(request.GET.get(SEARCH_VAR, "").strip())
        # Counted up to the cap already (a search, or a filter in list_sort_filtered).
        counted = getattr(request, FOUND_MATCHES, None)
        return self.paginator(
            queryset,
            per_page,
            count_cap=SEARCH_COUNT_MAX if searching or counted is not None else None,
            counted=counted,
            walk=getattr(request, WALK_ORDER, False),
            # A page past the end (an estimate's link, an old bookmark) is the last page.
            past_end_is_last=True,
            **kwargs,
        )

    def get_search_fields(self, request: HttpRequest) -> Sequence[str]:
        if self.search_matches:
            return [match.path for match in self.search_matches]
        return super().get_search_fields(request)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        if not self.search_matches:
            return super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term:
            return queryset, False
        search = search_q(self.model, searched(self.model, self.search_matches, request), term)
        if search.q is None:
            return queryset.none(), False
        if search.sort_matches:
            # Counted now (it is the list's total: the paginator does not count again), to
            # choose between sorting a few matches and walking the list's order for many.
            matches = queryset.filter(search.q).order_by().values("pk")
            count = matches[: SEARCH_COUNT_MAX + 1].count()
            setattr(request, FOUND_MATCHES, count)
            if count > SEARCH_COUNT_MAX:
                # A common word: the first page is within the first few hundred rows of the
                # list's order. PostgreSQL would still sort every match (it cannot tell how
                # many there are), so the paginator reads the page walking the order's index.
                setattr(request, WALK_ORDER, True)
                return queryset.filter(search.q), False
        # Read by ScaledChangeList.get_queryset, which orders the list after the search.
        setattr(request, SORT_MATCHES, search.sort_matches)
        return queryset.filter(search.q), False

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        cl = super().get_changelist_instance(request)
        if cl.search_help_text and any(m.how == How.CONTAINS for m in self.search_matches):
            cl.search_help_text = "{} {}".format(
                cl.search_help_text,
                _("A number is matched exactly, never inside a text."),
            )
        if cl.search_help_text and any(
            m.how == How.WHOLE for m in searched(self.model, self.search_matches, request)
        ):
            cl.search_help_text = "{} {}".format(
                cl.search_help_text,
                _("You see customers' names masked: a name is found by the whole name only."),
            )
        return cl

    def changelist_view(self, request: HttpRequest, extra_context=None):
        response = super().changelist_view(request, extra_context)
        cl = (getattr(response, "context_data", None) or {}).get("cl")
        if getattr(cl, "count_is_estimate", False):
            response.context_data["selection_note_all"] = _("All %(count)s selected") % {
                "count": cl.count_text
            }
        return response
