"""Mask again what the call log stored before masking (or before a field joined the lists in
upstream/calls/redaction.py): headers, bodies and URLs as a new call would store them.
Idempotent; only rows that change are written. `manage.py mask_personal_data` and the personal
data retention sweep (security/retention.py) run it."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from upstream.calls.redaction import redact, redact_body, redact_headers
from upstream.models import UpstreamCall


def masked_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    # Pair by pair: a repeated key stays, and a URL with nothing to mask is left as it was.
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    masked = [(key, redact({key: value})[key]) for key, value in pairs]
    if masked == pairs:
        return url
    return urlunsplit(parts._replace(query=urlencode(masked)))[:500]


def calls_remask(
    batch: int = 500, *, after: datetime | None = None, before: datetime | None = None
) -> tuple[int, int]:
    """Mask the call log's rows (made in [after, before) when given): (read, changed)."""
    fields = ("id", "url", "request_headers", "request", "response")
    calls = UpstreamCall.objects.all()
    if after is not None:
        calls = calls.filter(created_at__gte=after)
    if before is not None:
        calls = calls.filter(created_at__lt=before)
    last, seen, changed = 0, 0, 0
    while True:
        rows = list(calls.filter(pk__gt=last).order_by("pk").values(*fields)[:batch])
        if not rows:
            return seen, changed
        for row in rows:
            new = {
                "url": masked_url(row["url"]),
                "request_headers": redact_headers(row["request_headers"] or {}),
                "request": redact_body(row["request"]),
                "response": redact_body(row["response"]),
            }
            if any(new[name] != row[name] for name in new):
                UpstreamCall.objects.filter(pk=row["id"]).update(**new)
                changed += 1
        seen += len(rows)
        last = rows[-1]["id"]
