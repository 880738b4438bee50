from django import template

from upstream.formatting import money as format_money

register = template.Library()


@register.filter
def money(value, currency: str = "TRY") -> str:
    return format_money(value, currency or "TRY")
