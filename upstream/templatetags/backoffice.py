from django import template

from upstream.l10n.formats import money as format_money

register = template.Library()


@register.filter
def money(value, currency: str = "TRY") -> str:
    return format_money(value, currency or "TRY")


@register.filter
def record_link(item) -> str:
    """A job item's or call's record, linked to its admin page."""
    from upstream.history.timeline import record_link as link

    # `live_repr`: the record's label as this reader may see it (upstream.admin.tools).
    return link(item.target_type, item.target_id, getattr(item, "live_repr", item.target_repr))


@register.inclusion_tag("admin/upstream/_operations.html", takes_context=True)
def operations_dashboard(context) -> dict:
    """The admin index: counts for the reader, upstream health, charts
    (upstream/console/dashboard.py)."""
    from upstream.console.dashboard import dashboard

    return dashboard(context["request"].user)


@register.inclusion_tag("admin/upstream/_dashboard.html", takes_context=True)
def upstream_dashboard(context) -> dict:
    """The index page's summary: the latest jobs and the calls that need a look today."""
    from datetime import timedelta

    from django.utils import timezone

    from upstream.models import Job, UpstreamCall

    user = context["request"].user
    since = timezone.now() - timedelta(hours=24)
    return {
        # Staff's jobs: the syncs (every few minutes per upstream) have their mirror cards.
        "jobs": list(Job.objects.exclude(kind__endswith=".sync").select_related("created_by")[:6])
        if user.has_perm("upstream.view_job")
        else [],
        # What the reader did: their pushes, refreshes and queries are jobs (never LogEntry).
        "my_jobs": list(Job.objects.filter(created_by=user).order_by("-created_at", "-pk")[:10]),
        "problem_calls": UpstreamCall.objects.filter(
            created_at__gte=since, outcome__in=["failed", "rejected", "in_doubt"]
        ).count()
        if user.has_perm("upstream.view_upstreamcall")
        else None,
        "since": since,
    }


@register.simple_tag
def counted(count: int, opts, shown: str | None = None) -> str:
    """ "490 ödeme kaydı", not Django's "490 ödeme kayıtları" (upstream/l10n/grammar.py)."""
    from upstream.l10n.grammar import counted as counted_text

    return counted_text(count, opts, shown)


@register.simple_tag
def noun_after(count: int, opts) -> str:
    from upstream.l10n.grammar import noun_after as noun

    return noun(count, opts)


@register.filter
def filter_heading(title) -> str:
    """ "By status" / "Duruma göre": the list filter's whole heading (upstream/l10n/headings.py)."""
    from upstream.l10n.headings import filter_heading as heading

    return heading(title)
