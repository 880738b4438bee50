"""Payofin's subscriber-number masks (`fields.mask`), checked before anything is sent.

The syntax is payofin.md §9 assumption 16, and only that: `9` a required digit (ASCII), `#` an
optional digit allowed only after every required character, `A` a required letter, `*` a
required letter or digit; any other character must appear literally. An empty mask is no rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from django.utils.translation import gettext as _

if TYPE_CHECKING:
    from .models import Institution

DIGITS = frozenset("0123456789")
REQUIRED_CLASSES = frozenset("9A*")


class MaskError(ValueError):
    """A mask outside the syntax (e.g. `#` before a required character)."""


@dataclass(frozen=True)
class Mask:
    text: str
    required: str  # the mask without its tail of optional digits
    optional: int  # how many optional digits may follow

    @property
    def min_length(self) -> int:
        return len(self.required)

    @property
    def max_length(self) -> int:
        return len(self.required) + self.optional

    def matches(self, value: str) -> bool:
        if not self.text:
            return True
        if not self.min_length <= len(value) <= self.max_length:
            return False
        for m, ch in zip(self.required, value, strict=False):
            if m == "9":
                ok = ch in DIGITS
            elif m == "A":
                ok = ch.isalpha()
            elif m == "*":
                ok = ch in DIGITS or ch.isalpha()
            else:
                ok = ch == m
            if not ok:
                return False
        return all(ch in DIGITS for ch in value[self.min_length :])

    def describe(self) -> str:
        """What staff must type, e.g. "10 digits", "8 to 11 digits" or the mask explained."""
        if set(self.required) <= {"9"}:
            if self.optional:
                return _("%(min)s to %(max)s digits") % {
                    "min": self.min_length,
                    "max": self.max_length,
                }
            return _("%(count)s digits") % {"count": self.min_length}
        return _("the format %(mask)s (9 a digit, A a letter, * a letter or digit)") % {
            "mask": self.text
        }


@lru_cache(maxsize=256)
def parse_mask(text: str) -> Mask:
    text = text or ""
    required = text.rstrip("#")
    if "#" in required:
        raise MaskError(f"mask {text!r}: '#' (optional digit) only after the required characters")
    return Mask(text=text, required=required, optional=len(text) - len(required))


def mask_matches(mask: str, value: str) -> bool:
    return parse_mask(mask).matches(value)


def subscriber_no_errors(
    institution: Institution, subscriber_no: str, additional_no: str
) -> list[str]:
    """Why Payofin would refuse this query (codes -14 and -16), before it is sent."""
    errors = []
    label = institution.field_title or _("subscriber number")
    if not subscriber_no:
        if institution.subscriber_required:
            errors.append(_("The %(label)s is missing.") % {"label": label})
    else:
        try:
            mask = parse_mask(institution.mask)
        except MaskError:
            # A mask we cannot read is not ours to enforce: Payofin stays the judge.
            mask = None
        if mask is not None and not mask.matches(subscriber_no):
            errors.append(
                _("%(institution)s expects the %(label)s as %(rule)s; got “%(value)s”.")
                % {
                    "institution": institution.name,
                    "label": label,
                    "rule": mask.describe(),
                    "value": subscriber_no,
                }
            )
    if institution.additional_no_required and not additional_no:
        errors.append(
            _("%(institution)s needs the additional number of the bill.")
            % {"institution": institution.name}
        )
    return errors
