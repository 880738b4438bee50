"""Refresh as a job: re-read records from their upstream and list, per record, what changed.

A read-only kind (no write call, no record claim): its items only read, and `apply` writes the
mirror from what was read with the history source `refresh` (the job's creator and the job).
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import models
from django.utils.translation import gettext as _

from upstream.history.changes import current_source, history_call, history_source
from upstream.history.sync import SyncCounts
from upstream.history.timeline import field_label, format_value
from upstream.pushes.kinds import JobKind, WorkItem, WorkResult

# A refresh of a big record lists this many records' changes on its item at most.
MAX_LISTED = 200


class RefreshHandler(JobKind):
    claims_records = False
    operation = ""
    # The model whose fields the listed changes name (labels and ₺ / date formatting).
    record_model: ClassVar[type[models.Model]]
    # The history source of what the items write: a refresh, or a sync (upstream.history.sync_job).
    history_kind: ClassVar[str] = "refresh"

    def read(self, client: Any, item: WorkItem) -> Any:
        """Read the item's record(s) from the upstream; only HTTP, no database."""
        raise NotImplementedError

    def write(self, result: WorkResult) -> SyncCounts:
        """Write what was read into the mirror; return its counts with `fields` filled."""
        raise NotImplementedError

    def write_many(self, results: list[WorkResult]) -> list[SyncCounts]:
        """Write a flush's reads; a kind may do it in bulk (a sync). Each result's writes
        carry its read's call: the records read are not all the item's target."""
        written = []
        for r in results:
            with history_call(r.call_id):
                written.append(self.write(r))
        return written

    def push(self, client: Any, item: WorkItem) -> Any:
        return self.read(client, item)

    def settle(self, client: Any, item: WorkItem) -> Any | None:
        return self.read(client, item)

    def apply(self, results: list[WorkResult]) -> None:
        outer = current_source()
        with history_source(
            self.history_kind,
            actor_id=outer.actor_id if outer else None,
            reason=outer.reason if outer else "",
            job_id=outer.job_id if outer else None,
        ):
            for r, counts in zip(results, self.write_many(results), strict=True):
                r.result = {
                    "created": counts.created,
                    "updated": counts.updated,
                    "unchanged": counts.unchanged,
                    "deleted": counts.deleted,
                    # Records read (the held ones too) and those newly gone upstream.
                    "seen": counts.created + counts.updated + counts.unchanged + counts.held,
                    "held": counts.held,
                    "vanished": counts.vanished,
                    "records": counts.fields[:MAX_LISTED],
                }

    def describe(self, result: dict[str, Any]) -> str:
        if "records" not in result:
            return ""
        lines = []
        for record in result["records"]:
            if record.get("vanished"):
                lines.append(_("%(record)s: no longer listed upstream") % record)
                continue
            model = (record.get("model") and _model(record["model"])) or self.record_model
            changes = ", ".join(
                f"{field_label(model, c['field'])} {format_value(model, c['field'], c['old'])} → "
                f"{format_value(model, c['field'], c['new'])}"
                for c in record["changes"]
            )
            lines.append(f"{record['record']}: {changes}")
        if not lines:
            return _("No change: the mirror already held what the upstream holds.")
        return "; ".join(lines)


def _model(label: str) -> type[models.Model]:
    from django.apps import apps

    return apps.get_model(label)
