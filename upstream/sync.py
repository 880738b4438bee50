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
