"""Case folding that Turkish readers expect, the same in Python, SQLite and PostgreSQL.

Neither database folds Turkish case for a search: SQLite's LIKE and LOWER know only A-Z, and
PostgreSQL's UPPER/ILIKE follow the database's collation (C.UTF-8 here), which maps "i" to "I"
and leaves "İ" and "ı" apart. So "özkan" did not find "Özkan", nor "ibrahim" "İbrahim".

`fold(text)` lower-cases A-Z and the Turkish capitals (with Â Î Û Ä É) from one explicit
table, and folds all four i's (i, ı, İ, I) to "i": a reader typing "ibrahim", "IBRAHIM" or
"ışık" finds the name however it was keyed in upstream. `Folded(column)` is the same fold as
SQL: one TRANSLATE on PostgreSQL (immutable, so a trigram index is built on it), LOWER and
REPLACE on SQLite. Both come from the one table below, so the three never disagree, whatever
the database's collation.
"""

from __future__ import annotations

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import F, Q
from django.db.models.lookups import Contains, Exact

_ASCII_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Capitals beyond A-Z (and the dotless ı), each with what it folds to.
_OTHER = {
    "Ç": "ç",
    "Ğ": "ğ",
    "İ": "i",
    "ı": "i",
    "Ö": "ö",
    "Ş": "ş",
    "Ü": "ü",
    "Â": "â",
    "Î": "î",
    "Û": "û",
    "Ä": "ä",
    "É": "é",
}
_FROM = _ASCII_UPPER + "".join(_OTHER)
_TO = _ASCII_UPPER.lower() + "".join(_OTHER.values())
# ASCII "I" folds to "i" like the rest of A-Z, which is also where ı and İ go.
_TABLE = str.maketrans(_FROM, _TO)


def fold(text: str) -> str:
    """`text` as the search compares it: "İBRAHİM IŞIK" -> "ibrahim işik"."""
    return text.translate(_TABLE)


class Folded(models.Func):
    """fold() of a text column, as SQL (see the module docstring)."""

    # The table holds no quote or percent sign, so it can sit in the SQL as literals; literals
    # (not parameters) keep the query's expression the same as the index's.
    template = f"TRANSLATE(%(expressions)s, '{_FROM}', '{_TO}')"
    output_field = models.TextField()

    def as_sqlite(self, compiler, connection, **extra_context):
        # SQLite has no TRANSLATE; its LOWER folds A-Z only, the rest is replaced one by one
        # (which is why the table is short: SQLite's parser refuses deeply nested calls).
        template = "LOWER(%(expressions)s)"
        for capital, small in _OTHER.items():
            template = f"REPLACE({template}, '{capital}', '{small}')"
        return self.as_sql(compiler, connection, template=template, **extra_context)


def stored_fold(model: type[models.Model] | None, path: str) -> str | None:
    """The path of the column that stores `path`'s text folded (`<field>_folded`, a generated
    column: billing.InvoiceItem.description_folded), or None when the model has none."""
    if model is None:
        return None
    *relations, name = path.split("__")
    for relation in relations:
        model = model._meta.get_field(relation).related_model
    try:
        stored = model._meta.get_field(f"{name}_folded")
    except FieldDoesNotExist:
        return None
    return f"{path}_folded" if getattr(stored, "generated", False) else None


def _folded(model: type[models.Model] | None, path: str) -> F | Folded:
    # A stored fold is compared as it is: TRANSLATE per row was most of a common word's count.
    stored = stored_fold(model, path)
    return F(stored) if stored else Folded(F(path))


def folded_contains(path: str, term: str, model: type[models.Model] | None = None) -> Q:
    """Rows whose text at `path` contains `term`, Turkish case folded (from `model`'s stored
    fold of the column when it has one)."""
    return Q(Contains(_folded(model, path), fold(term)))


def folded_equals(path: str, term: str, model: type[models.Model] | None = None) -> Q:
    """Rows whose text at `path` is `term`, Turkish case folded."""
    return Q(Exact(_folded(model, path), fold(term)))
