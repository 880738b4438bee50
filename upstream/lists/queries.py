"""Query pieces the big lists share."""

from __future__ import annotations

from django.db import models
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce


def related_count(model: type[models.Model], field: str) -> Coalesce:
    """How many `model` rows point at the row through `field`, counted for the rows shown.

    A subquery per row is one index lookup each; Count("...") over a join would group the
    whole related table (a million payment records) before a page of 50 could be cut.
    """
    rows = (
        model._default_manager.filter(**{field: OuterRef("pk")})
        .order_by()
        .values(field)
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=models.IntegerField()), 0)
