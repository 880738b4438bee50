"""Personal data WiseCP's pushes wrote in clear before masking (`manage.py mask_personal_data`)."""

from __future__ import annotations

import re

from upstream.calls.redaction import Kind, mask_value
from upstream.models import Job

from .models import Invoice
from .pushes import INVOICE_ITEM_UPDATE_KIND

# A bulk move's label: "#368 (Ali Can)", the target invoice and its customer.
_MOVE_LABEL = re.compile(r"^(?P<invoice>.*) \((?P<customer>[^()]*)\)$")


def remask_move_titles(batch: int) -> int:
    """Bulk moves' titles and parameters name the target invoice's customer; a person's name
    (an invoice's `full_name` without a company) is masked, a company's stays."""
    renamed = 0
    moves = Job.objects.filter(kind=INVOICE_ITEM_UPDATE_KIND, params__action="move")
    for job in moves.iterator(chunk_size=batch):
        label = str(job.params.get("value") or "")
        match = _MOVE_LABEL.match(label)
        if not match:
            continue
        name = match["customer"]
        if not Invoice.objects.filter(full_name=name, company_name="").exists():
            continue
        masked = f"{match['invoice']} ({mask_value(Kind.NAME, name)})"
        job.title = job.title.replace(label, masked)
        job.params = {**job.params, "value": masked}
        job.save(update_fields=["title", "params"])
        renamed += 1
    return renamed
