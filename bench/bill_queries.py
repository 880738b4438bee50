"""Query 1,500 subscriber numbers at the Payofin sandbox through a bill-query batch, against the
bound of 15 lines per request times C requests in flight per latency L; and, in the same run, a
baseline of one line per request, one request after another.

    .venv/bin/python bench/bill_queries.py        (PAYOFIN_CONCURRENCY=C overrides C, default 8)

The sandbox runs in a thread of this process with 100 ms latency; the database is a fresh SQLite
file in a temporary directory unless BENCH_DATABASE_URL names another, existing and empty
(e.g. PostgreSQL).
Last line: requests=<n> expected=<ceil(lines/15)> ratio_to_bound=<lines per s / (15*C/L)>
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LINES = 1500
PER_REQUEST = 15
LATENCY_MS = 100
BASELINE_SAMPLE = 30
SEED = 1500


def main() -> None:
    from sandbox.server import start_in_thread

    workdir = Path(tempfile.mkdtemp(prefix="bench-bill-queries-"))
    concurrency = int(os.environ.get("PAYOFIN_CONCURRENCY", "8"))
    server = start_in_thread(latency_ms=LATENCY_MS)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": os.environ.get(
                "BENCH_DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}"
            ),
            "TASKS_BACKEND": "dummy",  # the bench drives the runner itself
            "SANDBOX_URL": server.url,
            "PAYOFIN_BASE_URL": f"{server.url}/payofin",
            "PAYOFIN_CONCURRENCY": str(concurrency),
            "DJANGO_LOG_LEVEL": "WARNING",
            # As in production: DEBUG keeps every SQL statement in memory, which no worker does.
            "DJANGO_DEBUG": "false",
        }
    )
    try:
        run(server, concurrency)
    finally:
        server.shutdown()
        server.server_close()


def mask_valid_lines(institutions, count: int) -> list[dict]:
    from billqueries.demo import sample_number

    rng = random.Random(SEED)
    seen: set[tuple[int, str]] = set()
    lines = []
    while len(lines) < count:
        inst = institutions[len(lines) % len(institutions)]
        number = sample_number(inst.mask, rng)
        if (inst.soot_code, number) in seen:
            continue
        seen.add((inst.soot_code, number))
        additional = str(rng.randint(10**6, 10**7 - 1)) if inst.additional_no_required else ""
        lines.append(
            {"soot_code": inst.soot_code, "subscriber_no": number, "additional_no": additional}
        )
    return lines


def run(server, concurrency: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from billqueries.client import BillQuery, PayofinClient
    from billqueries.models import BillQueryBatch, BillQueryLine, Institution
    from billqueries.services import bill_query_batch_create
    from billqueries.sync import payofin_sync
    from upstream.pushes.bulk import run_job

    call_command("migrate", verbosity=0)
    payofin_sync()
    institutions = list(Institution.objects.filter(active=True).order_by("soot_code"))
    lines = mask_valid_lines(institutions, LINES + BASELINE_SAMPLE)
    sample, lines = lines[:BASELINE_SAMPLE], lines[BASELINE_SAMPLE:]
    ledger = server.sandbox.ledger

    # Baseline: one line per request, one request after another.
    client = PayofinClient()
    started = time.perf_counter()
    for i, line in enumerate(sample):
        client.multiple_invoice_query([BillQuery(firm_ref_no=f"BASE{i}", **line)])
    baseline_elapsed = time.perf_counter() - started
    baseline_rate = BASELINE_SAMPLE / baseline_elapsed

    before = len(ledger.entries("payofin", "multipleinvoicequery"))
    started = time.perf_counter()
    batch = bill_query_batch_create(lines=lines, actor=None, source=BillQueryBatch.Source.API)
    create_elapsed = time.perf_counter() - started
    started = time.perf_counter()
    counts = run_job(batch.job_id)
    elapsed = time.perf_counter() - started
    batch.refresh_from_db()

    sent = ledger.entries("payofin", "multipleinvoicequery")[before:]
    refs = [ref for e in sent for ref in e["firmRefNos"]]
    rate = LINES / elapsed
    bound = PER_REQUEST * concurrency / (LATENCY_MS / 1000)
    expected = math.ceil(LINES / PER_REQUEST)
    result = {
        "database": connection.vendor,
        "lines": LINES,
        "latency_ms": LATENCY_MS,
        "concurrency": concurrency,
        "create_s": round(create_elapsed, 2),
        "run_s": round(elapsed, 2),
        "lines_per_s": round(rate, 1),
        "bound_lines_per_s": bound,
        "baseline_sample": BASELINE_SAMPLE,
        "baseline_lines_per_s": round(baseline_rate, 1),
        "speedup_vs_baseline": round(rate / baseline_rate, 1),
        "job": counts,
        "batch": {
            "state": batch.state,
            "found": batch.found_count,
            "no_debt": batch.no_debt_count,
            "failed": batch.failed_count,
            "bills": batch.debt_count,
            "debt_total": str(batch.debt_total),
        },
        "requests": len(sent),
        "largest_request": max((e["count"] for e in sent), default=0),
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bill_queries-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(result, indent=2)
    )
    for key, value in result.items():
        print(f"{key}: {value}")
    done = BillQueryLine.objects.filter(batch=batch, state=BillQueryLine.State.DONE).count()
    ok = (
        done == LINES
        and batch.failed_count == 0
        and len(refs) == len(set(refs)) == LINES
        and set(refs) == set(batch.lines.values_list("firm_ref_no", flat=True))
        and result["largest_request"] <= PER_REQUEST
    )
    print(f"checks: {'ok' if ok else 'FAILED'} (every line sent once, at most 15 per request)")
    print(
        f"baseline: {baseline_rate:.1f} lines/s one per request; "
        f"batch: {rate:.1f} lines/s ({rate / baseline_rate:.0f}x)"
    )
    print(f"requests={len(sent)} expected={expected} ratio_to_bound={rate / bound:.3f}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
