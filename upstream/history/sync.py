"""What every sync reports: the rows it created, updated, left alone and removed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Model


@dataclass
class SyncCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    # Records left alone because a push claimed or wrote them after the read began.
    held: int = 0
    # Records a complete read no longer lists, reported for the first time.
    vanished: int = 0
    # One entry per notable change, in the vertical's own shape (shown in job results).
    changes: list[dict[str, Any]] = field(default_factory=list)
    # Per record what changed, field by field: {"record", "changes": [{field, old, new}]}.
    fields: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: SyncCounts) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        self.held += other.held
        self.vanished += other.vanished
        self.changes += other.changes
        self.fields += other.fields


def upstream_sync(service: str, **kwargs: Any) -> SyncCounts:
    """Run one upstream's full sync into the mirror, its changes recorded with source `sync`.

    Neither Paynet nor WiseCP lists records by modification time (paynet.md §6.1, wisecp.md
    §10.11), so a periodic sync reads everything; `since` only narrows by creation date.
    """
    from upstream.calls.log import DbCallRecorder
    from upstream.history.changes import history_source
    from upstream.registry import upstream

    sync = upstream(service).sync  # each upstream's sync lives in its app (sync.py)
    kwargs.setdefault("recorder", DbCallRecorder())
    with history_source("sync", keep_outer=True):
        return sync(**kwargs)


def held_back(model: type[Model], pks: Iterable[Any], read_began: datetime) -> set[Any]:
    """The records among `pks` that a read begun at `read_began` must not write (the one door).

    A record claimed by a push now, or written by a push (a change with a push's source) at
    or after the read began, may hold a value the read never saw: writing the read over it would
    undo the push and open a false "reverted" drift. Such a record is left for the next read.
    Costs two indexed queries per CHUNK records (the live claims, then the push changes), never
    one per record. Call it inside the transaction that writes, after locking the rows it names
    (PostgreSQL), so a push's write cannot slip in between this check and that write.
    """
    from django.contrib.contenttypes.models import ContentType

    from upstream.history.changes import CHUNK
    from upstream.models import RecordChange
    from upstream.pushes.claims import live_claim_ids

    pks = list(dict.fromkeys(pks))
    if not pks:
        return set()
    content_type = ContentType.objects.get_for_model(model)
    held: set[Any] = set()
    for start in range(0, len(pks), CHUNK):
        chunk = pks[start : start + CHUNK]
        held |= live_claim_ids(model, chunk)
        rest = [pk for pk in chunk if pk not in held]
        if rest:
            held |= set(
                RecordChange.objects.filter(
                    content_type=content_type,
                    object_id__in=rest,
                    at__gte=read_began,
                    source__in=RecordChange.PUSH_SOURCES,
                )
                .order_by()
                .values_list("object_id", flat=True)
                .distinct()
            )
    return held
