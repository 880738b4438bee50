"""Template builtins (config/settings.py TEMPLATES "builtins"): loaded after Django's own, so
`|capfirst` and `|upper` in every template, the admin's included, write Turkish capitals."""

from django import template
from django.template.defaultfilters import stringfilter

from upstream.l10n import capitals as text

register = template.Library()


@register.filter(is_safe=True)
@stringfilter
def capfirst(value: str) -> str:
    return text.capfirst(value)


@register.filter(is_safe=False)
@stringfilter
def upper(value: str) -> str:
    return text.upper(value)
