"""What every sync reports: the rows it created, updated, left alone and removed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SyncCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    # One entry per notable change, in the vertical's own shape (shown in job results).
    changes: list[dict[str, Any]] = field(default_factory=list)
    # Per record what changed, field by field: {"record", "changes": [{field, old, new}]}.
    fields: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: SyncCounts) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
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
