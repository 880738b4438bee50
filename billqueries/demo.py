"""A finished demo batch, so a fresh `make run` shows what a bill-query batch looks like."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import requests
from django.conf import settings

from upstream.pushes.bulk import run_job

from .masks import MaskError, parse_mask
from .models import BillQueryBatch, Institution
from .services import bill_query_batch_create
from .sync import payofin_sync

# The published multiple-query sample (payofin.md §4): three bills and one "no debt".
SAMPLE_LINES = [
    (1, "01345677000"),
    (1, "1345600"),
    (1, "01345699000"),
    (1, "0134569000"),
]
LINES_PER_INSTITUTION = 3
# (position, code and message) of lines Payofin refuses in the demo, one per request of 15.
REFUSALS = [
    (6, "-14: Geçersiz abone numarası."),
    (20, "-24"),
    (31, "-14: Geçersiz abone numarası."),
]


def sample_number(mask: str, rng: random.Random) -> str:
    """A number that fits the mask (payofin.md §9 assumption 16)."""
    try:
        parsed = parse_mask(mask)
    except MaskError:
        parsed = parse_mask("")
    if not parsed.text:
        return "".join(rng.choice("0123456789") for _ in range(10))
    out = []
    for m in parsed.required:
        if m == "9":
            out.append(rng.choice("0123456789"))
        elif m == "A":
            out.append(rng.choice("ABCDEFGHKMNPRSTUVYZ"))
        elif m == "*":
            out.append(rng.choice("ABCDEFGHKMNPRSTUVYZ0123456789"))
        else:
            out.append(m)
    out += [rng.choice("0123456789") for _ in range(rng.randint(0, parsed.optional))]
    return "".join(out)


def demo_lines(institutions: list[Institution], seed: int = 2024) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    codes = {i.soot_code for i in institutions}
    lines = [
        {"soot_code": code, "subscriber_no": number, "additional_no": ""}
        for code, number in SAMPLE_LINES
        if code in codes
    ]
    for inst in institutions:
        for _ in range(LINES_PER_INSTITUTION):
            additional = str(rng.randint(1000000, 9999999)) if inst.additional_no_required else ""
            lines.append(
                {
                    "soot_code": inst.soot_code,
                    "subscriber_no": sample_number(inst.mask, rng),
                    "additional_no": additional,
                }
            )
    return lines


def _sandbox_refusals(lines: list[dict[str, Any]]) -> None:
    """Against the sandbox, have Payofin refuse a few lines, as the real one sometimes does."""
    if not settings.PAYOFIN_BASE_URL.startswith(settings.SANDBOX_URL):
        return
    rules = [
        {
            "kind": "reject",
            "service": "payofin",
            "operation": "multipleinvoicequery",
            "match": {"subscriberNo": lines[position - 1]["subscriber_no"]},
            "message": message,
            "times": 1,
        }
        for position, message in REFUSALS
        if position <= len(lines)
    ]
    # Without the sandbox's fault endpoint the demo simply has no refusals.
    with contextlib.suppress(requests.RequestException):
        requests.post(
            f"{settings.SANDBOX_URL}/_sandbox/faults",
            json={"rules": rules, "replace": False},
            timeout=5,
        ).raise_for_status()


def demo_batch_ensure(*, log=print) -> BillQueryBatch | None:
    """Create and run a demo batch of about 30 lines, unless any batch exists already."""
    if BillQueryBatch.objects.exists():
        log("Bill query batches exist; no demo batch added.")
        return None
    if not Institution.objects.filter(active=True).exists():
        payofin_sync()
    institutions = list(Institution.objects.filter(active=True).order_by("soot_code"))
    if not institutions:
        log("Payofin lists no institutions; no demo batch added.")
        return None
    lines = demo_lines(institutions)
    _sandbox_refusals(lines)
    batch = bill_query_batch_create(lines=lines, actor=None, source=BillQueryBatch.Source.PASTED)
    run_job(batch.job_id)
    batch.refresh_from_db()
    log(
        f"Demo bill query batch #{batch.pk}: {batch.line_count} lines, {batch.found_count} with "
        f"debt, {batch.no_debt_count} without, {batch.failed_count} failed."
    )
    return batch
